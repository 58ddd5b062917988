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

Cross-feed (:meth:`LegacyFunctionAdapter.evaluate`, full capture only): the adapter keeps,
for the last two steps, the step's feed and the state before it (the values the
previous record read: nothing more is read per step). It sets the given weights (and
state) with ``K.batch_set_value``, runs the capture function on that feed (loss,
gradients, layer outputs) and sets back the values it found, bitwise. It computes no
``"state"`` and no ``"weights"``: the moving-statistics assignments and the optimizer's
update ops (and its slots, e.g. momentum) exist only inside the user's ``K.function``,
which cannot run without applying them. Limit: stateful random ops (Dropout) draw anew
in each evaluation, so its masks are not those of the step evaluated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xentdbg.adapters import _tf_keras_private as private
from xentdbg.adapters._keras_hooks import reads_training
from xentdbg.adapters.base import Adapter, Emit, given_batch, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import LegacyKerasFunction

LEGACY_HINT = "Install the legacy extra: pip install 'xentdbg[legacy]' (tf_keras)."


def _name(variable) -> str:
    return variable.name.split(":")[0]


class LegacyFunctionAdapter(Adapter):
    """Runs :class:`xentdbg.LegacyKerasFunction` in graph mode; see the module docstring."""

    PROBE_PHASES = ("loss", "gradients", "activations")  # no optimizer step or state update outside the function
    ORACLE_PHASES = ("loss", "gradients")

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
        self._observer = None  # the capture function of a fully captured train()
        self._retained: dict[int, tuple[list, list[np.ndarray]]] = {}  # step -> (feed, state before it)
        self._oracle_fn: Any = None  # the float64 oracle's capture function, made on first use

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
        full = observer is not None and capture is CaptureMode.FULL
        self._observer, self._retained = (observer if full else None), {}
        state_before = [np.array(a) for a in K.batch_get_value(self.state_vars)] if full else []
        for i in range(steps):
            sl = spec.batch_slice(i)
            x, y = self.data.x[sl], self.data.y[sl]
            feed = self.feed(x, y)
            if full:
                self._retained[i] = (feed, state_before)
                self._retained.pop(i - 2, None)
            if observer is not None:
                _, phase, *rest = observer(feed)
                grads, acts = rest[:n], rest[n:]
            loss = self.setup.function(feed)[0]
            if observer is None:
                continue
            inputs, digests = batch_fingerprint(x, y)
            names = [_name(v) for v in self.model.trainable_weights]
            state_before = [np.array(a) for a in K.batch_get_value(self.state_vars)]  # after this step
            record = StepRecord(step=i, flags={name: bool(phase) for name in self._flagged}, digests=digests, tensors={
                "inputs": inputs,
                **({"activations": [(layer.name, np.asarray(a)) for layer, a in zip(self.layers, acts, strict=True)],
                    "gradients": list(zip(names, map(np.asarray, grads), strict=True))}
                   if capture is CaptureMode.FULL else {}),
                "loss": [("loss", np.asarray(loss))],
                "state": [(_name(v), a) for v, a in zip(self.state_vars, state_before, strict=True)],
                "weights": list(zip(names, map(np.array, K.batch_get_value(self.model.trainable_weights)))),
            })
            assert emit is not None  # observer exists only when capturing
            emit(record)

    def held_batch(self, step: int) -> list[np.ndarray]:
        """The data slice step ``step`` fed (the feed itself is the setup's ``feed`` of it)."""
        if step not in self._retained:
            raise ValueError(f"step {step} is no longer held (kept: {sorted(self._retained)})")
        sl = self.data.spec.batch_slice(step)
        return [self.data.x[sl], self.data.y[sl]]

    def oracle(self, params: list[np.ndarray], state: list[np.ndarray] | None,
               batch: list[np.ndarray]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Loss and gradients from the capture function in float64 (see
        :meth:`Adapter.oracle`): the setup built its graph under tf_keras ``floatx``
        float64 in this worker, and the feed is the setup's ``feed`` of the batch widened
        to float64. It leaves the weights set; this worker never trains."""
        if self.K.floatx() != "float64":
            raise ValueError(f"tf_keras floatx is {self.K.floatx()} in the float64 worker "
                             "(the setup sets it)")
        random = [layer.name for layer in self.layers if isinstance(layer, self.tf_keras.layers.Dropout)]
        if random:
            raise ValueError(f"the model draws random numbers ({', '.join(random[:3])}): a float64 re-run "
                             "cannot draw the masks the step drew")
        if self._oracle_fn is None:
            self._oracle_fn = self._capture_function(CaptureMode.FULL)
        self.set_initial_values(params, state)
        x, y = (np.asarray(a).astype(np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
                for a in batch[:2])
        loss, _, *rest = self._oracle_fn(self.feed(x, y))
        weights = self.model.trainable_weights
        return {"loss": [("loss", np.asarray(loss))],
                "gradients": [(_name(v), np.asarray(g)) for v, g in zip(weights, rest[:len(weights)], strict=True)]}

    def evaluate(self, step: int, params: list[np.ndarray], state: list[np.ndarray] | None,
                 grads: list[np.ndarray] | None = None, optimizer: list[np.ndarray] | None = None,
                 batch: list[np.ndarray] | None = None) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Loss, gradients and layer outputs of step ``step`` from ``params`` (and
        ``state``, else this side's state before that step), on its feed or the setup's
        ``feed`` of ``batch``; see the module docstring. ``grads`` and ``optimizer`` are
        not used: without ``"weights"`` nothing applies gradients."""
        kept = self._retained.get(step)
        if kept is None or self._observer is None:
            raise ValueError(f"LegacyKerasFunction cannot re-run step {step}: it keeps the last two steps of a "
                             f"fully captured train() (kept: {sorted(self._retained)}).")
        feed, own_state = kept
        if batch is not None:
            sl = self.data.spec.batch_slice(step)
            feed = self.feed(*given_batch(batch, self.data.x[sl], self.data.y[sl]))
        K, weights = self.K, self.model.trainable_weights
        variables = [*weights, *self.state_vars]
        now = [np.array(a) for a in K.batch_get_value(variables)]
        try:
            self.set_initial_values(params, own_state if state is None else state)
            loss, _, *rest = self._observer(feed)
        finally:
            K.batch_set_value(list(zip(variables, now, strict=True)))  # bitwise: training goes on from here
        n = len(weights)
        # No "state", no "weights": see the module docstring (they exist only inside the user's function).
        return {
            "loss": [("loss", np.asarray(loss))],
            "gradients": [(_name(v), np.asarray(g)) for v, g in zip(weights, rest[:n], strict=True)],
            "activations": [(layer.name, np.asarray(a)) for layer, a in zip(self.layers, rest[n:], strict=True)],
        }
