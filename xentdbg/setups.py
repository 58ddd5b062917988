"""What a setup function returns: a description of one training setup.

A setup is ``path/to/file.py:name`` (``name`` defaults to ``setup``): a function that
takes a :class:`xentdbg.data.DataInfo` and returns one of the classes below. The
classes only hold the user's objects; the adapters in :mod:`xentdbg.adapters` run them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# fit() arguments that xentdbg owns: the data and the number of steps come from the
# command line so that both sides see the same batches.
FIT_ARGS_OWNED = ("x", "y", "batch_size", "epochs", "steps_per_epoch", "initial_epoch")


class KerasFit:
    """A compiled Keras 3 model trained by the real ``model.fit(**fit_kwargs)``.

    xentdbg passes ``x``, ``y``, ``batch_size`` and ``epochs`` from the command line and
    your other fit arguments unchanged; as in your own code, ``fit`` shuffles unless you
    pass ``shuffle=False``.

    Example::

        def setup(data):
            model = keras.Sequential([...]); model.compile("sgd", "binary_crossentropy")
            return xentdbg.KerasFit(model, shuffle=False)
    """

    def __init__(self, model: Any, **fit_kwargs: Any):
        self.model = model
        self.fit_kwargs = fit_kwargs


@dataclass
class JaxLoop:
    """A JAX training loop that xentdbg writes for you, one jitted step per batch.

    Each step computes, for the batch ``(x, y)``::

        loss, grads = value_and_grad(loss_fn)(params, x, y)
        params, opt_state = optimizer step(grads)

    Args:
        params: the initial parameters, any pytree of arrays.
        loss_fn: ``loss_fn(params, x, y) -> loss``, or ``loss_fn(params, batch)`` with
            ``batch = (x, y)``; with ``state`` given, ``loss_fn(params, state, x, y) ->
            (loss, new_state)`` or ``loss_fn(params, state, batch)``. The form is read from
            the number of positional parameters.
        optimizer: an ``optax.GradientTransformation`` or the
            ``(init_fun, update_fun, get_params)`` triple of
            ``jax.example_libraries.optimizers``.
        state: optional non-trainable model state (e.g. BatchNorm statistics) threaded
            through ``loss_fn``; captured as the ``state`` phase.
        layers: optional ``stax`` layers, the ``(init_fun, apply_fun)`` pairs you pass to
            ``stax.serial``; when given, xentdbg records each layer's output
            (``params[i]`` feeds ``layers[i]``).
        jit: compile the step with ``jax.jit``. Defaults to True.
    """

    params: Any
    loss_fn: Callable[..., Any]
    optimizer: Any
    state: Any = None
    layers: Sequence[tuple[Callable, Callable]] | None = None
    jit: bool = True


@dataclass
class KerasLoop:
    """Your own Keras 3 / TensorFlow training step, exactly as you wrote it.

    ``train_step(x, y) -> loss`` runs one optimisation step (eager, or decorated with
    ``tf.function``) and applies gradients with ``optimizer.apply_gradients`` or
    ``optimizer.apply``. xentdbg calls it once per batch, in order.

    Example::

        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return xentdbg.KerasLoop(model, train_step, optimizer)
    """

    model: Any
    train_step: Callable[[Any, Any], Any]
    optimizer: Any


@dataclass
class LegacyKerasFunction:
    """A TF1-style tf_keras training function in graph mode, as in pre-TF2 code.

    Build everything after ``tf.compat.v1.disable_eager_execution()``::

        model = tf_keras.Sequential([...])
        y_true = K.placeholder(shape=(None, 10))
        loss = K.mean(tf_keras.losses.categorical_crossentropy(y_true, model.output))
        updates = optimizer.get_updates(loss, model.trainable_weights) + model.updates
        train = K.function([model.input, y_true, xentdbg.legacy_learning_phase()], [loss],
                           updates=updates)
        return xentdbg.LegacyKerasFunction(model, train, feed=lambda x, y: [x, y, True])

    Args:
        model: the tf_keras model.
        function: the ``K.function`` that runs one step; its first output is the loss.
        feed: ``feed(x, y)`` returns the values for ``function.inputs``. Defaults to ``[x, y]``.

    Needs ``pip install 'xentdbg[legacy]'`` (tf_keras). Runs in its own worker process:
    graph mode is process-global.
    """

    model: Any
    function: Any
    feed: Callable[[Any, Any], list] | None = None
