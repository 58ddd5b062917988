"""Adapter for :class:`xentdbg.LegacyKerasFunction`: a tf_keras ``K.function`` in graph mode.

Behaviour it reproduces (tf_keras 2.21, docs/library-behaviour.md):
- the learning phase is a ``placeholder_with_default(False)`` created by tf_keras's
  private ``symbolic_learning_phase()`` (reached through
  :func:`xentdbg.adapters._tf_keras_private.symbolic_learning_phase`);
  unless the function feeds it True, BatchNormalization runs in inference mode;
- BatchNormalization's moving statistics move only if ``model.updates`` are among the
  function's ``updates``.

Capture: before each real step, a second ``K.function`` on the same inputs fetches the
loss, ``K.gradients(loss, trainable_weights)``, every layer's output and the learning
phase. It has no updates, so it changes no variable; the real function's pruned graph
does not contain its ops. Weights and state are read after the step with
``K.batch_get_value``. Limit: stateful random ops (Dropout) draw once more per step in
the capture run, so a model with Dropout does not train as it would uncaptured.
"""

from __future__ import annotations

import numpy as np

from xentdbg.adapters import _tf_keras_private as private
from xentdbg.adapters._keras_hooks import reads_training
from xentdbg.adapters.base import Adapter, Emit, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import LegacyKerasFunction

LEGACY_HINT = "Install the legacy extra: pip install 'xentdbg[legacy]' (tf_keras)."


def _name(variable) -> str:
    return variable.name.split(":")[0]


class LegacyFunctionAdapter(Adapter):
    """Runs :class:`xentdbg.LegacyKerasFunction` in graph mode; see the module docstring."""

    def __init__(self, setup: LegacyKerasFunction, data: DataInfo):
        try:
            import tf_keras
            from tf_keras import backend as K
        except ModuleNotFoundError:
            raise UsageError("LegacyKerasFunction needs tf_keras, which is not installed.", hint=LEGACY_HINT) from None
        import tensorflow as tf

        if tf.executing_eagerly():
            raise UsageError("LegacyKerasFunction: eager execution is on.",
                             hint="Call tf.compat.v1.disable_eager_execution() in the setup before building the model.")
        if not isinstance(setup.model, tf_keras.Model):
            raise UsageError(f"LegacyKerasFunction got a {type(setup.model).__name__}, not a tf_keras model.")
        self.tf, self.tf_keras, self.K = tf, tf_keras, K
        self.setup, self.data, self.model = setup, data, setup.model
        self.feed = setup.feed or (lambda x, y: [x, y])
        self.loss = setup.function.outputs[0]
        self.layers = [layer for layer in self.model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
        self.state_vars = [v for v in self.model.non_trainable_weights if v.dtype.is_floating]

    def describe(self) -> SideInfo:
        return SideInfo(
            kind="LegacyKerasFunction",
            framework={"tf_keras": self.tf_keras.__version__, "tensorflow": self.tf.__version__,
                       "backend": "tensorflow (graph mode)", **python_info()},
            params=[TensorSpec(_name(v), tuple(v.shape.as_list()), v.dtype.name) for v in self.model.trainable_weights],
            state=[TensorSpec(_name(v), tuple(v.shape.as_list()), v.dtype.name) for v in self.state_vars],
            layers=[layer.name for layer in self.layers],
        )

    def initial_values(self):
        K = self.K
        return ([np.array(a) for a in K.batch_get_value(self.model.trainable_weights)],
                [np.array(a) for a in K.batch_get_value(self.state_vars)])

    def set_initial_values(self, params, state) -> None:
        pairs = []
        if params is not None:
            pairs += list(zip(self.model.trainable_weights, params, strict=True))
        if state is not None:
            pairs += list(zip(self.state_vars, state, strict=True))
        self.K.batch_set_value([(v, a.astype(v.dtype.as_numpy_dtype)) for v, a in pairs])

    def final_weights(self) -> list[np.ndarray]:
        return [np.array(a) for a in self.K.batch_get_value(self.model.trainable_weights)]

    def _capture_function(self, capture: CaptureMode):
        """A second ``K.function`` without updates, run before the real step. With
        ``CaptureMode.FINGERPRINT`` it fetches only the learning phase (the loss comes
        from the real step)."""
        K = self.K
        weights = self.model.trainable_weights
        self._flagged = [layer.name for layer in self.layers if reads_training(layer)]
        # identity: a placeholder the step feeds cannot also be fetched
        fetches = [self.loss, self.tf.identity(private.symbolic_learning_phase())]
        if capture is CaptureMode.FULL:
            fetches += [*K.gradients(self.loss, weights), *[layer.output for layer in self.layers]]
        return K.function(self.setup.function.inputs, fetches)

    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        capture = CaptureMode(capture)
        observer = self._capture_function(capture) if emit is not None else None
        spec, K = self.data.spec, self.K
        n = len(self.model.trainable_weights)
        for i in range(steps):
            sl = spec.batch_slice(i)
            x, y = self.data.x[sl], self.data.y[sl]
            feed = self.feed(x, y)
            if observer is not None:
                _, phase, *rest = observer(feed)
                grads, acts = rest[:n], rest[n:]
            loss = self.setup.function(feed)[0]
            if observer is None:
                continue
            inputs, digests = batch_fingerprint(x, y)
            names = [_name(v) for v in self.model.trainable_weights]
            record = StepRecord(step=i, flags={name: bool(phase) for name in self._flagged}, digests=digests, tensors={
                "inputs": inputs,
                **({"activations": [(layer.name, np.asarray(a)) for layer, a in zip(self.layers, acts, strict=True)],
                    "gradients": list(zip(names, map(np.asarray, grads), strict=True))}
                   if capture is CaptureMode.FULL else {}),
                "loss": [("loss", np.asarray(loss))],
                "state": [(_name(v), np.array(a)) for v, a in zip(self.state_vars, K.batch_get_value(self.state_vars))],
                "weights": list(zip(names, map(np.array, K.batch_get_value(self.model.trainable_weights)))),
            })
            assert emit is not None  # observer exists only when capturing
            emit(record)
