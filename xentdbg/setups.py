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
    """A compiled Keras model trained by the real ``model.fit(**fit_kwargs)``: Keras 3, or
    Keras 2 (tf_keras; ``tf.keras`` under ``TF_USE_LEGACY_KERAS=1``).

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
            ``stax.serial``, or the pair ``stax.serial`` returned; when given, xentdbg
            records each layer's output (``params[i]`` feeds ``layers[i]``).
        jit: compile the step with ``jax.jit``. Defaults to True.
    """

    params: Any
    loss_fn: Callable[..., Any]
    optimizer: Any
    state: Any = None
    layers: Sequence[tuple[Callable, Callable]] | None = None
    jit: bool = True


@dataclass
class JaxStep:
    """Your own JAX training step, exactly as you wrote it, with its own training state.

    xentdbg calls ``step`` once per batch and never changes it. To capture the loss and
    gradients it differentiates ``loss_fn`` at the pre-step parameters in a separate
    jitted function (the step's own outputs are not read), as it does for Keras.

    Args:
        step: ``step(state, x, y)`` or ``step(state, batch)`` with ``batch = (x, y)``;
            returns the new state, or a tuple whose first item is the new state (for
            example ``(state, loss)`` or ``(state, metrics)``). Jitted or not, as you wrote it.
        state: the initial training state: the parameters themselves, a Flax
            ``TrainState``, or any pytree that holds them.
        loss_fn: the loss ``step`` minimises, ``loss_fn(params, x, y)`` or
            ``loss_fn(params, batch)``; with a ``model_state``,
            ``loss_fn(params, model_state, x, y) -> (loss, new_model_state)``, the training
            forward pass returning the updated collections (as ``JaxLoop``'s stateful loss).
        grads_fn: instead of ``loss_fn`` (with a ``mesh``: as well), your own function
            that returns the gradients and the loss at the state's parameters,
            ``grads_fn(state, x, y)`` or
            ``grads_fn(state, batch)``, as Flax's MNIST example's ``apply_model`` returns
            ``(grads, loss, accuracy)``: the item shaped like the parameters is the
            gradients, the first scalar the loss. It runs at the pre-step state, apart
            from the step.
        params: ``params(state)``: the parameter pytree inside ``state`` (by default
            ``state.params`` for a Flax ``TrainState``, else the state itself). Its leaves
            must be leaves of ``state``: that is how xentdbg puts the shared initial
            weights, and the other side's weights for a cross-feed, in their place. The
            other leaves (optimizer moments, counters) are the optimizer state.
        model_state: ``model_state(state)``: the non-trainable model state inside
            ``state``, such as Flax linen's ``batch_stats`` (BatchNorm's moving
            statistics). By default ``state.batch_stats`` for a ``TrainState`` that has
            that field, as Flax's ImageNet example defines it, else none. Its leaves must
            be leaves of ``state``, like the parameters' (``lambda s: {}`` records none).
            Each record's ``state`` phase holds it after the step (the step's own result);
            the cross-feed and the shared initial values set it in place. The per-replica
            copies and the float64 oracle take it from ``loss_fn``'s second result, so they
            assume the step stores what its loss returns. A default ``batch_stats`` with a
            ``loss_fn(params, x, y)`` is not recorded (the loss cannot return it).
        layers: optional ``stax`` layers (``params[i]`` feeds ``layers[i]``) for per-layer
            activations, as for :class:`JaxLoop`. A Flax linen ``TrainState`` needs none:
            each submodule's output is read with linen's ``capture_intermediates``, or,
            for a model with ``batch_stats``, through ``loss_fn`` in training mode.
        indexed: the step takes the step number first, ``step(i, state, batch)``, as the
            ``jax.example_libraries.optimizers`` pattern does; see :meth:`from_optimizers`.
        mesh: for a data-parallel step, the ``jax.sharding.Mesh`` it runs over. xentdbg then
            feeds each global batch as a data-parallel input pipeline does,
            ``jax.device_put(a, NamedSharding(mesh, P(batch_axis)))`` for ``x`` and ``y``:
            replica ``r`` (position ``r`` along ``batch_axis``) holds the ``r``-th
            contiguous slice of ``n / R`` samples. The step, written with ``jax.shard_map``
            and ``jax.lax.pmean``/``psum``, or jitted over the sharded arrays, runs as
            written. The batch size must be a multiple of ``R``
            (``jax.device_put`` refuses an uneven split).
        batch_axis: the mesh axis the batch is split along; by default the mesh's first.

    With a ``mesh``, each record also holds, per replica (``StepRecord.replicas``), its
    samples and what a data-parallel step computes on its own slice before the reduction:
    the local loss and local gradients of ``loss_fn`` at the pre-step parameters,
    ``jax.shard_map(jax.value_and_grad(loss_fn))`` over the same mesh (recomputed by
    xentdbg, not read from the step). With a ``model_state`` and a step written with
    ``jax.shard_map``, each replica also holds the model state its own forward pass
    computes (BatchNorm's moving statistics from its slice, before any ``pmean``), and
    the layer outputs come from each replica's forward pass on its slice, joined in
    replica order. The record's own gradients are the ones the step
    applies when you give ``grads_fn``, your own sharded function the step calls (observed:
    its output is what the step applies); with ``loss_fn`` alone they are recomputed on the
    whole global batch, which is what a correct data-parallel step applies up to the order
    of the sum. Give both: ``loss_fn`` for the replicas, ``grads_fn`` for the applied
    gradients.

    Example (``flax.training.train_state.TrainState``)::

        @jax.jit
        def train_step(state, batch):
            loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
            return state.apply_gradients(grads=grads), loss

        return xentdbg.JaxStep(train_step, state, loss_fn)

    Example (data-parallel over 4 devices, ``jax.shard_map``)::

        mesh = jax.make_mesh((4,), ("data",))

        def local(params, x, y):  # one replica's slice of the batch
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            return jax.lax.pmean(loss, "data"), jax.lax.pmean(grads, "data")

        grads_fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                         out_specs=P(), check_vma=False))

        @jax.jit
        def train_step(state, x, y):
            loss, grads = grads_fn(state.params, x, y)
            return state.apply_gradients(grads=grads), loss

        return xentdbg.JaxStep(train_step, state, loss_fn, mesh=mesh,
                               grads_fn=lambda state, x, y: grads_fn(state.params, x, y))
    """

    step: Callable[..., Any]
    state: Any
    loss_fn: Callable[..., Any] | None = None
    params: Callable[[Any], Any] | None = None
    layers: Sequence[tuple[Callable, Callable]] | None = None
    indexed: bool = False
    grads_fn: Callable[..., Any] | None = None
    mesh: Any = None  # a jax.sharding.Mesh
    batch_axis: str | None = None
    model_state: Callable[[Any], Any] | None = None

    @classmethod
    def from_optimizers(cls, update: Callable[..., Any], opt_state: Any, get_params: Callable[[Any], Any],
                        loss_fn: Callable[..., Any],
                        layers: Sequence[tuple[Callable, Callable]] | None = None) -> JaxStep:
        """The ``jax.example_libraries.optimizers`` pattern, as in JAX's
        ``examples/mnist_classifier.py``::

            opt_init, opt_update, get_params = optimizers.momentum(step_size, mass=0.9)

            @jit
            def update(i, opt_state, batch):
                params = get_params(opt_state)
                return opt_update(i, grad(loss)(params, batch), opt_state)

            return xentdbg.JaxStep.from_optimizers(update, opt_init(init_params), get_params, loss)
        """
        return cls(update, opt_state, loss_fn, params=get_params, layers=layers, indexed=True)


@dataclass
class NnxStep:
    """A Flax NNX model trained by your own step, exactly as you wrote it.

    xentdbg calls ``step`` once per batch; it updates ``model`` and ``optimizer`` in place
    (``optimizer.update(model, grads)`` inside ``nnx.jit``), and its return value is not
    read. To capture the loss and gradients xentdbg differentiates ``loss_fn`` at the
    pre-step parameters on a copy of the model, in its own jitted function.

    Args:
        model: the ``flax.nnx.Module``. Its ``nnx.Param`` variables are the parameters,
            its ``nnx.BatchStat`` variables (BatchNorm statistics) the recorded state.
        optimizer: the ``flax.nnx.Optimizer`` the step updates.
        step: ``step(model, optimizer, x, y)`` or ``step(model, optimizer, batch)`` with
            ``batch = (x, y)``.
        loss_fn: ``loss_fn(model, x, y)`` or ``loss_fn(model, batch)``, returning the loss
            or ``(loss, aux)``.

    Example::

        @nnx.jit
        def train_step(model, optimizer, batch):
            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
            optimizer.update(model, grads)

        return xentdbg.NnxStep(model, optimizer, train_step, loss_fn)
    """

    model: Any
    optimizer: Any
    step: Callable[..., Any]
    loss_fn: Callable[..., Any]


@dataclass
class KerasLoop:
    """Your own TensorFlow training step over a Keras 3 or Keras 2 (tf_keras) model, exactly
    as you wrote it.

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

    Data-parallel: with ``strategy`` (a ``tf.distribute.MirroredStrategy`` under whose
    ``scope()`` the model and optimizer were built), each global batch reaches
    ``train_step`` as the per-replica values ``strategy.experimental_distribute_dataset``
    would yield for it (replica ``r`` takes the ``r``-th contiguous slice), the way a
    distributed loop iterates its dataset::

        @tf.function
        def train_step(x, y):
            per_replica = strategy.run(step_fn, args=(x, y))
            return strategy.reduce("SUM", per_replica, axis=None)

        return xentdbg.KerasLoop(model, train_step, optimizer, strategy=strategy)

    xentdbg then records each replica's loss, local gradients and state next to the
    reduced result (see :mod:`xentdbg.adapters.keras_loop`).
    """

    model: Any
    train_step: Callable[[Any, Any], Any]
    optimizer: Any
    strategy: Any = None


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
