"""Adapter for :class:`xentdbg.KerasLoop`: the user's own train step, unchanged.

The user's step runs exactly as written. To see its gradients and layer outputs
without touching it, each step first runs a *dry copy*: the step's Python function,
compiled separately when the original is a ``tf.function`` (same ``jit_compile``) or
called eagerly when it is eager, with ``optimizer.apply`` swapped for a function that
returns the gradients instead of applying them. Then every model variable
(weights, BatchNorm statistics, RNG seed states) is restored bitwise from a snapshot
and the real step runs.

Keras 3's ``apply_gradients`` calls ``self.apply`` (keras/src/optimizers/base_optimizer.py:462,
Keras 3.15), so patching the instance's ``apply`` covers both. The patch is a
Python wrapper that adds no op to the real step's graph.

Limits: variables outside the model that the step changes (a metric, a step counter)
are changed twice; TensorFlow's global RNG (``tf.random.*`` without a seed generator)
advances in the dry copy too.

Keras and TensorFlow internals are reached only through
:mod:`xentdbg.adapters._keras_private`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from xentdbg.adapters import _keras_private as private
from xentdbg.adapters._keras_hooks import LayerHooks, leaf_layers
from xentdbg.adapters.base import Adapter, Emit, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import KerasLoop


class KerasLoopAdapter(Adapter):
    """Runs :class:`xentdbg.KerasLoop`: the user's train step; see the module docstring."""

    def __init__(self, setup: KerasLoop, data: DataInfo):
        import keras

        self.keras, self.setup, self.data = keras, setup, data
        self.model, self.optimizer = setup.model, setup.optimizer
        if not isinstance(self.model, keras.Model):
            raise UsageError(f"KerasLoop got a {type(self.model).__name__}, not a keras.Model.")
        if keras.backend.backend() != "tensorflow":
            raise UsageError(f"KerasLoop runs TensorFlow train steps; this worker's Keras backend is "
                             f"{keras.backend.backend()!r}.", hint="Drop KERAS_BACKEND for this side.")
        if not callable(getattr(self.optimizer, "apply", None)):
            raise UsageError(f"KerasLoop optimizer is a {type(self.optimizer).__name__}.",
                             hint="Pass the keras.optimizers.Optimizer your train_step applies gradients with.")
        if not self.model.built:
            self.model.build((None, *data.input_shape))
        self._state_index = [i for i, v in enumerate(self.model.non_trainable_variables)
                             if keras.backend.is_float_dtype(v.dtype)]

    # -- description (same tables as KerasFit, so the two pair) ---------------
    def describe(self) -> SideInfo:
        import tensorflow as tf

        nt = self.model.non_trainable_variables
        step = self.setup.train_step
        compiled = hasattr(step, "python_function")
        return SideInfo(
            kind="KerasLoop",
            framework={"keras": self.keras.__version__, "backend": "tensorflow", "tensorflow": tf.__version__,
                       "train_step": "tf.function" if compiled else "eager", **python_info()},
            params=[TensorSpec(v.path, tuple(v.shape), str(np.dtype(v.dtype))) for v in self.model.trainable_variables],
            state=[TensorSpec(nt[i].path, tuple(nt[i].shape), str(np.dtype(nt[i].dtype))) for i in self._state_index],
            layers=[layer.name for layer in leaf_layers(self.model)],
        )

    def initial_values(self):
        nt = self.model.non_trainable_variables
        return ([np.array(v.numpy()) for v in self.model.trainable_variables],
                [np.array(nt[i].numpy()) for i in self._state_index])

    def set_initial_values(self, params, state) -> None:
        if params is not None:
            for v, a in zip(self.model.trainable_variables, params, strict=True):
                v.assign(a.astype(np.dtype(v.dtype)))
        if state is not None:
            nt = self.model.non_trainable_variables
            for i, a in zip(self._state_index, state, strict=True):
                nt[i].assign(a.astype(np.dtype(nt[i].dtype)))

    def final_weights(self) -> list[np.ndarray]:
        return [np.array(v.numpy()) for v in self.model.trainable_variables]

    # -- training ----------------------------------------------------------
    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        import tensorflow as tf

        capture = CaptureMode(capture)
        # CaptureMode.FINGERPRINT: no dry copy; flags from the hooks on the real step,
        # loss from its return value
        dry = _DryStep(self) if emit is not None and capture is CaptureMode.FULL else None
        hooks = dry.hooks if dry is not None else (LayerHooks(self.model) if emit is not None else None)
        spec = self.data.spec
        for i in range(steps):
            sl = spec.batch_slice(i)
            x, y = tf.convert_to_tensor(self.data.x[sl]), tf.convert_to_tensor(self.data.y[sl])
            if dry is not None:
                grads, acts = dry.run(x, y)
            out = self.setup.train_step(x, y)
            if emit is None:
                continue
            loss = _loss_of(out)
            model = self.model
            assert hooks is not None  # installed whenever emit is given
            inputs, digests = batch_fingerprint(self.data.x[sl], self.data.y[sl])
            nt = model.non_trainable_variables
            tnames = [v.path for v in model.trainable_variables]
            record = StepRecord(step=i, flags=dict(hooks.flags), digests=digests, tensors={
                "inputs": inputs,
                **({"activations": acts, "gradients": list(zip(tnames, grads, strict=True))}
                   if capture is CaptureMode.FULL else {}),
                "loss": [("loss", np.asarray(loss))],
                "state": [(nt[k].path, np.array(nt[k].numpy())) for k in self._state_index],
                "weights": [(n, np.array(v.numpy())) for n, v in zip(tnames, model.trainable_variables)],
            })
            emit(record)


class _DryStep:
    """The user's step with ``optimizer.apply`` returning gradients instead of applying them."""

    def __init__(self, adapter: KerasLoopAdapter):
        import tensorflow as tf

        self.adapter = adapter
        self.model = adapter.model
        self.hooks = LayerHooks(self.model)
        self._dry = False
        self._applied = True
        self._grads: list = []
        optimizer = adapter.optimizer
        original_apply = optimizer.apply

        @functools.wraps(original_apply)
        def apply(grads, trainable_variables=None):
            if not self._dry:
                return original_apply(grads, trainable_variables)
            variables = (trainable_variables if trainable_variables is not None
                         else private.optimizer_trainable_variables(optimizer))
            self._grads = list(zip(variables, grads))
            return None

        optimizer.apply = apply
        step = adapter.setup.train_step
        python_step = getattr(step, "python_function", step)

        def body(x, y):
            self._dry = True
            self._grads = []
            try:
                with self.hooks.collect() as acts:
                    python_step(x, y)
                # Python runs here at trace time inside a tf.function: whether the step called
                # the optimizer is known then (raised from run(), outside the traced function).
                self._applied = bool(self._grads)
            finally:
                self._dry = False
            by_id = {id(v): g for v, g in self._grads}  # the step passes model.trainable_variables
            grads = [by_id.get(id(v)) for v in self.model.trainable_variables]
            grads = [tf.zeros_like(v.value) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(grads, self.model.trainable_variables)]
            self._names = [n for n, _ in acts]
            return grads, [a for _, a in acts]

        if hasattr(step, "python_function"):
            # Same compilation as the user's step, so the dry copy computes what it computes.
            self._body = tf.function(body, jit_compile=private.tf_function_jit_compile(step), reduce_retracing=True)
        else:
            self._body = body

    def run(self, x, y) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]]]:
        variables = self.model.variables
        snapshot = [v.numpy() for v in variables]
        grads, acts = self._body(x, y)
        for v, value in zip(variables, snapshot):
            v.assign(value)  # bitwise restore: the dry copy leaves no trace
        if not self._applied:
            raise UsageError(
                "The KerasLoop train_step changed the weights without calling optimizer.apply or "
                "optimizer.apply_gradients, so xentdbg cannot see the gradients it used.",
                hint="Apply the gradients with optimizer.apply_gradients(zip(grads, model.trainable_variables)) "
                     "(a v.assign_sub(lr * g) loop trains the same with keras.optimizers.SGD(lr)), or compare "
                     "this setup with --fingerprint, which does not capture gradients.")
        return ([np.array(g) for g in grads], [(n, np.array(a)) for n, a in zip(self._names, acts, strict=True)])



def _loss_of(out: Any) -> np.ndarray:
    """The loss a ``train_step`` returned: a scalar; or the first element of a tuple or
    list (``return loss, logits``); or a dict's ``"loss"`` (``return {"loss": loss, ...}``)."""
    value = out
    if isinstance(out, dict):
        value = out.get("loss")
    elif isinstance(out, (tuple, list)) and out:
        value = out[0]
    array = None if value is None else np.asarray(value)
    if array is None or array.size != 1 or array.dtype.kind not in "fiu":
        raise UsageError(
            f"The KerasLoop train_step returned {_describe(out)}; xentdbg needs the step's loss.",
            hint="Return the scalar loss, a tuple whose first element is the loss (return loss, logits), "
                 "or a dict with a 'loss' entry.")
    return array.reshape(())


def _describe(out: Any) -> str:
    if out is None:
        return "None"
    if isinstance(out, dict):
        return f"a dict with keys {sorted(map(str, out))}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}" + (f" starting with {_describe(out[0])}" if out else "")
    shape = getattr(out, "shape", None)
    return f"a {type(out).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
