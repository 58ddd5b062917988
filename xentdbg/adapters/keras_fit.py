"""Adapter for :class:`xentdbg.KerasFit`: the real ``model.fit``, observed step by step.

Capture must not change the training (measured bitwise, see ``docs/library-behaviour.md``
and ``tests/replay/test_neutral_capture.py``), so nothing is added to the user's compiled step
except where measured neutral:

- TF backend: ``model.compute_loss`` is wrapped to store the batch ``x``, ``y`` and
  ``sample_weight`` that fit actually used in shape-less ``tf.Variable`` s (fit may
  shuffle inside ``tf.data``: keras/src/trainers/data_adapters/array_data_adapter.py
  ~L134, Keras 3.15).
- JAX backend: ``model.train_function`` (a Python function around the jitted step) is
  wrapped to keep the batch and a host copy of the pre-step state; the jitted step
  itself is untouched (``_keras_private.observe_jax_train_steps``).
- Loss, activations and gradients are *recomputed* after the step from the pre-step
  weights and the captured batch with ``stateless_call`` under a separate compiled
  function (same ``jit_compile``). Storing gradients from inside the user's step was
  measured to change BatchNorm gamma by 1 ulp (Grappler rewrites single-consumer
  tensors), the recompute was measured bitwise equal to the in-graph gradients.
- Weights and non-trainable state are read in ``on_train_batch_end``.
- ``CaptureMode.FINGERPRINT`` (the first pass of ``compare --fingerprint``): no
  recompute. On the TF backend the wrapper also stores the loss ``compute_loss``
  returned in a shape-less variable (measured neutral,
  ``tests/replay/test_neutral_capture.py``); on the JAX backend the loss is recomputed
  by a forward pass only.

Keras internals are reached only through :mod:`xentdbg.adapters._keras_private`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from xentdbg.adapters import _keras_private as private
from xentdbg.adapters._keras_hooks import LayerHooks, leaf_layers
from xentdbg.adapters.base import Adapter, Emit, StopReplay, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import FIT_ARGS_OWNED, KerasFit


class KerasFitAdapter(Adapter):
    """Runs :class:`xentdbg.KerasFit`: the user's ``model.fit``; see the module docstring."""

    def __init__(self, setup: KerasFit, data: DataInfo):
        import keras

        self.keras = keras
        self.backend = keras.backend.backend()
        self.model, self.data = setup.model, data
        model = self.model
        if not isinstance(model, keras.Model):
            raise UsageError(f"KerasFit got a {type(model).__name__}, not a keras.Model.",
                             hint="Return xentdbg.KerasFit(model, ...) with a Keras 3 model "
                                  "(tf_keras models need LegacyKerasFunction).")
        if not getattr(model, "compiled", False):
            raise UsageError("KerasFit: the model is not compiled.",
                             hint="Call model.compile(optimizer, loss) in your setup.")
        owned = sorted(set(setup.fit_kwargs) & set(FIT_ARGS_OWNED))
        if owned:
            raise UsageError(f"KerasFit: fit argument(s) {', '.join(owned)} are set by xentdbg.",
                             hint="Remove them; use --subset, --batch-size and --steps instead.")
        if getattr(model, "steps_per_execution", 1) != 1:
            raise UsageError("KerasFit: steps_per_execution must be 1 for per-step capture.")
        if not model.built:
            model.build((None, *data.input_shape))
        self.fit_kwargs = dict(setup.fit_kwargs)
        # Float non-trainable variables are model state (BatchNorm moving statistics);
        # integer ones are RNG seed states, compared only through their effects.
        self.state_index = [i for i, v in enumerate(model.non_trainable_variables)
                             if keras.backend.is_float_dtype(v.dtype)]

    # -- description -------------------------------------------------------
    def describe(self) -> SideInfo:
        keras = self.keras
        fw = {"keras": keras.__version__, "backend": self.backend, **python_info()}
        if self.backend == "tensorflow":
            import tensorflow as tf

            fw["tensorflow"] = tf.__version__
            fw["jit_compile"] = str(self.model.jit_compile)
        elif self.backend == "jax":
            import jax

            fw["jax"] = jax.__version__
        nt = self.model.non_trainable_variables
        return SideInfo(
            kind="KerasFit", framework=fw,
            params=[TensorSpec(v.path, tuple(v.shape), str(np.dtype(v.dtype))) for v in self.model.trainable_variables],
            state=[TensorSpec(nt[i].path, tuple(nt[i].shape), str(np.dtype(nt[i].dtype))) for i in self.state_index],
            layers=[layer.name for layer in leaf_layers(self.model)],
        )

    def _numpy(self, values) -> list[np.ndarray]:
        return [np.array(self.keras.ops.convert_to_numpy(v), copy=True) for v in values]

    def initial_values(self):
        nt = self.model.non_trainable_variables
        return (self._numpy([v.value for v in self.model.trainable_variables]),
                self._numpy([nt[i].value for i in self.state_index]))

    def set_initial_values(self, params, state) -> None:
        if params is not None:
            for v, a in zip(self.model.trainable_variables, params, strict=True):
                v.assign(a.astype(np.dtype(v.dtype)))
        if state is not None:
            nt = self.model.non_trainable_variables
            for i, a in zip(self.state_index, state, strict=True):
                nt[i].assign(a.astype(np.dtype(nt[i].dtype)))

    def final_weights(self) -> list[np.ndarray]:
        return self._numpy([v.value for v in self.model.trainable_variables])

    # -- training ----------------------------------------------------------
    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        keras = self.keras
        spec = self.data.spec
        epochs = math.ceil(steps / spec.steps_per_epoch)
        capturer = _FitCapture(self, steps, emit, CaptureMode(capture)) if emit is not None else None
        stopper = _StopAfter(steps)
        kwargs = {"verbose": 0, **self.fit_kwargs}
        user_callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks = user_callbacks + ([capturer.callback(keras)] if capturer else []) + [stopper.callback(keras)]
        try:
            self.model.fit(self.data.x, self.data.y, batch_size=spec.batch_size, epochs=epochs,
                           callbacks=callbacks, **kwargs)
        except StopReplay:
            pass
        if self.backend == "jax":
            private.jax_state_sync(self.model)


def _snapshot(model) -> tuple[list, list]:
    """The model's variables as TF tensors, read now (TF backend).

    A read aliases the variable's buffer; TF copies on the next in-place update while a
    read value is alive (``PrepareToUpdateVariable``, tensorflow/core/kernels/
    training_op_helpers.h), so the snapshot keeps its values and the update its result.
    Going through numpy and ``tf.constant`` instead costs two copies of every variable
    (2 ms per step for the case-1 model)."""
    import tensorflow as tf

    return ([tf.convert_to_tensor(v.value) for v in model.trainable_variables],
            [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables])


def _host(tensors) -> list[np.ndarray]:
    """Read-only numpy views of eager tensors: ``memoryview`` is zero-copy on the CPU
    (``EagerTensor.numpy`` docstring, tensorflow/python/framework/ops.py); ``.numpy()``
    copies, and the record is copied once more anyway, to the worker's channel."""
    out = []
    for t in tensors:
        try:
            out.append(np.asarray(memoryview(t)))
        except (TypeError, ValueError, NotImplementedError):  # a dtype without a buffer format
            out.append(t.numpy())
    return out


class _StopAfter:
    """Ends fit after ``steps`` batches by setting ``model.stop_training`` (checked per batch)."""

    def __init__(self, steps: int):
        self.steps, self.seen = steps, 0

    def callback(self, keras: Any) -> Any:
        outer = self

        class StopAfter(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.seen += 1
                if outer.seen >= outer.steps:
                    self.model.stop_training = True

        return StopAfter()


class _FitCapture:
    """Installs the hooks described in the module docstring and builds step records."""

    def __init__(self, adapter: KerasFitAdapter, steps: int, emit: Emit, capture: CaptureMode = CaptureMode.FULL):
        self.adapter, self.steps, self.emit, self.capture = adapter, steps, emit, capture
        self.model = adapter.model
        self.hooks = LayerHooks(self.model)
        self.step = 0
        self._pre: tuple[Any, ...] | None = None
        self._batch: tuple[Any, ...] | None = None
        if adapter.backend == "tensorflow":
            self._install_tf()
        elif adapter.backend == "jax":
            self._install_jax()
        else:
            raise UsageError(f"KerasFit: Keras backend {adapter.backend!r} is not supported yet (tensorflow, jax).")

    # TF backend ------------------------------------------------------------
    def _install_tf(self) -> None:
        import tensorflow as tf

        model, hooks = self.model, self.hooks

        def var(dtype):
            return tf.Variable(tf.zeros([0], dtype=dtype), shape=tf.TensorShape(None), trainable=False)

        x_dtype = tf.as_dtype(self.adapter.data.x.dtype)
        self._vars = {"x": var(x_dtype), "y": var(tf.float32), "sw": var(tf.float32), "loss": var(tf.float32)}
        self._has_sw = False
        original = model.compute_loss

        @functools.wraps(original)
        def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
            if training and not hooks.collecting:
                self._vars["x"].assign(x)
                self._vars["y"].assign(tf.cast(y, tf.float32))
                if sample_weight is not None:
                    self._has_sw = True
                    self._vars["sw"].assign(tf.cast(sample_weight, tf.float32))
            loss = original(x, y, y_pred, sample_weight, training=training)
            if self.capture is CaptureMode.FINGERPRINT and training and not hooks.collecting:
                self._vars["loss"].assign(tf.reshape(tf.cast(loss, tf.float32), [-1]))
            return loss

        model.compute_loss = compute_loss
        mvars = model.metrics_variables

        def recompute(tv, ntv, x, y, sw):
            with tf.GradientTape() as tape:
                tape.watch(tv)
                with hooks.collect() as acts:
                    loss = self._stateless_loss(tv, ntv, [v.value for v in mvars], x, y, sw)
            grads = tape.gradient(loss, tv)
            self._act_names = [n for n, _ in acts]
            return loss, grads, [a for _, a in acts]

        # Same jit_compile as the user's step (keras/src/backend/tensorflow/trainer.py
        # make_train_function): XLA changes float32 results in the last digits.
        self._recompute = tf.function(recompute, jit_compile=bool(model.jit_compile), reduce_retracing=True)

    def _stateless_loss(self, tv, ntv, mv, x, y, sw):
        """The loss fit differentiates, as in keras/src/backend/jax/trainer.py
        ``compute_loss_and_updates`` (forward-pass losses included)."""
        model = self.model
        kwargs = {"training": True} if private.call_has_training_arg(model) else {}
        y_pred, _, losses = model.stateless_call(tv, ntv, x, return_losses=True, **kwargs)
        with private.override_losses(model, losses):
            loss, _ = model.stateless_compute_loss(tv, ntv, mv, x=x, y=y, y_pred=y_pred,
                                                   sample_weight=sw, training=True)
        return loss

    # JAX backend -----------------------------------------------------------
    def _install_jax(self) -> None:
        import jax

        model, hooks = self.model, self.hooks

        def host_copy(tree):
            return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), tree)

        def before_step(state, data) -> None:
            self._pre = host_copy(private.jax_train_state_variables(state))
            self._batch = host_copy(tuple(data) if isinstance(data, (tuple, list)) else (data,))

        private.observe_jax_train_steps(model, before_step)

        def loss_and_acts(tv, ntv, mv, x, y, sw):
            with hooks.collect() as acts:
                loss = self._stateless_loss(tv, ntv, mv, x, y, sw)
            self._act_names = [n for n, _ in acts]
            return loss, [a for _, a in acts]

        self._recompute_jax = jax.jit(jax.value_and_grad(loss_and_acts, has_aux=True))

        def loss_only(*args):
            with hooks.collect():  # keeps the recorded training flags those of fit's own step
                return self._stateless_loss(*args)

        self._loss_jax = jax.jit(loss_only)

    # Both --------------------------------------------------------------------
    def callback(self, keras: Any) -> Any:
        outer = self

        class Capture(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                outer.on_step_begin()

            def on_train_batch_end(self, batch, logs=None):
                outer.on_step_end()

            # fit's validation pass calls evaluate with fit's callbacks (Keras 3.15:
            # keras/src/backend/tensorflow/trainer.py:423-429, jax/trainer.py:511), which
            # traces and runs the model with training=False between on_test_begin and
            # on_test_end (tensorflow/trainer.py:504,515; jax/trainer.py:599,645). Those
            # calls are not the training step: their flags must not be recorded.
            def on_test_begin(self, logs=None):
                outer.hooks.recording = False

            def on_test_end(self, logs=None):
                outer.hooks.recording = True

            def on_predict_begin(self, logs=None):
                outer.hooks.recording = False

            def on_predict_end(self, logs=None):
                outer.hooks.recording = True

        return Capture()

    def on_step_begin(self) -> None:
        if self.adapter.backend == "tensorflow" and self.capture is CaptureMode.FULL:
            self._pre = _snapshot(self.model)

    def on_step_end(self) -> None:
        model = self.model
        pre, batch = self._pre, self._batch
        x: Any
        y: Any
        acts, grads = [], None
        if self.adapter.backend == "tensorflow":
            import tensorflow as tf

            xt, yt = tf.convert_to_tensor(self._vars["x"]), tf.convert_to_tensor(self._vars["y"])
            swt = tf.convert_to_tensor(self._vars["sw"]) if self._has_sw else None
            x, y = _host([xt, yt])
            if self.capture is CaptureMode.FINGERPRINT:
                loss = self._vars["loss"].numpy().reshape(())
            else:
                assert pre is not None  # on_step_begin snapshots it for full capture
                tv, ntv = pre
                loss, grads, acts = self._recompute(tv, ntv, xt, yt, swt)
            weights, nt = (_host(t) for t in _snapshot(model))
        else:
            assert pre is not None and batch is not None  # set by the observed train function
            tv, ntv, mv = pre
            x, y = batch[0], batch[1] if len(batch) > 1 else None
            sw = batch[2] if len(batch) > 2 else None
            if self.capture is CaptureMode.FINGERPRINT:
                loss = self._loss_jax(tv, ntv, mv, x, y, sw)
            else:
                (loss, acts), grads = self._recompute_jax(tv, ntv, mv, x, y, sw)
            trainable, non_trainable = private.jax_trainer_state(model)
            weights = [np.asarray(a) for a in trainable]
            nt = [np.asarray(a) for a in non_trainable]
        inputs, digests = batch_fingerprint(np.asarray(x), np.asarray(y))
        tnames = [v.path for v in model.trainable_variables]
        ntvars = model.non_trainable_variables
        tensors = {
            "inputs": inputs,
            "loss": [("loss", np.asarray(loss))],
            "state": [(ntvars[i].path, np.asarray(nt[i])) for i in self.adapter.state_index],
            "weights": list(zip(tnames, weights, strict=True)),
        }
        if self.capture is CaptureMode.FULL:
            tensors["activations"] = list(zip(self._act_names, (np.asarray(a) for a in acts), strict=True))
            tensors["gradients"] = list(zip(tnames, (np.asarray(g) for g in grads or []), strict=True))
        record = StepRecord(step=self.step, tensors=tensors, flags=dict(self.hooks.flags), digests=digests)
        self.step += 1
        self.emit(record)
