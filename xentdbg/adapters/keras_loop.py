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

The dry copy builds an unbuilt optimizer as ``apply`` would at its first call
(keras/src/optimizers/base_optimizer.py:498-502, Keras 3.15: same variable list, same
name scope), so that its variables exist, at their initial values, before step 0.

:meth:`KerasLoopAdapter.evaluate` (the cross-feed probe; full capture only) keeps, for
the last two steps, the batch, the dry copy's snapshot of every model variable (RNG
seed states included) and the optimizer's variables before the step. It sets them,
overwrites the weights and float state with the given ones, runs the dry copy (loss,
gradients, layer outputs; the float state after it is BatchNorm's moving statistics as
the step updates them; the seed states make Dropout draw step ``k``'s masks), then
applies the gradients with the real ``optimizer.apply`` from the optimizer variables
kept for that step (compiled like the user's step). Keras's ``stateless_apply`` is not
usable: its TensorFlow backend raises (keras/src/backend/tensorflow/optimizer.py:39-44).
Every model and optimizer variable is then restored bitwise.

Keras 2 (tf_keras) models run the same way, with what differs read through
:mod:`xentdbg.adapters._keras_flavour`: their steps call ``optimizer.apply_gradients``
(tf_keras/src/optimizers/optimizer.py:1271; ``minimize`` calls it too, :622-623), which
the dry copy swaps instead of ``apply``. tf_keras's Dropout draws with TensorFlow's legacy
stateful ops (:func:`_tf_keras_private.legacy_stateful_random_layers`): a compiled dry
copy draws the step's masks when a global seed is set, its random ops being the step's
in the step's order and run once per step (its own kernels advance with the step's). So
every step checks that the dry copy returned the step's loss bitwise, and
:meth:`KerasLoopAdapter.evaluate` refuses such models (another run would advance the dry
copy's kernels). An eager step with such layers cannot be captured in full: eager ops
take their seeds from a global counter that the dry copy would advance.

Under a ``tf.distribute`` strategy (:attr:`xentdbg.KerasLoop.strategy`; Keras 3) each
global batch is split as the strategy's input pipeline splits it
(:func:`_tf_distribute.distribute_batch`) and the user's step runs ``strategy.run`` as
written. The dry copy runs it too: each replica's swapped ``apply`` keeps that replica's
local gradients and sums them across replicas with the collective Keras's optimizer
uses (:func:`_tf_distribute.all_reduce_sum`), the gradients the step applies; a wrapper
on ``strategy.run``, set only while the dry copy is traced, keeps each replica's loss;
the layer hooks keep each replica's outputs, joined in replica order. The record holds
the reduced result (the returned loss, the summed gradients, the first replica's copy
of the state, which is what reading a variable gives) and, in ``StepRecord.replicas``,
each replica's loss, local gradients and copy of the state. Every step checks that the
dry copy returned the step's loss (within the rounding of its reduction across
replicas: Grappler may rewrite the ``add_n`` of the replicas' losses otherwise in the dry
copy's graph; measured 1 ulp apart). Variables are snapshotted and restored per
replica: replicas' copies of BatchNormalization's statistics may differ. The cross-feed
runs under the strategy: given gradients (already summed) enter the optimizer as replica
0's, zeros in the others, so the optimizer's sum is exact
(:func:`_tf_distribute.first_replica_only`), and a given state equal to the first
replica's copy keeps every replica's own copy (:meth:`KerasLoopAdapter._given_state`).
The float64 oracle does not run under a strategy.

Keras and TensorFlow internals are reached only through
:mod:`xentdbg.adapters._keras_private` (Keras 3) and :mod:`xentdbg.adapters._tf_keras_private`
(tf_keras).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xentdbg.adapters import _keras_private as private
from xentdbg.adapters import _tf_distribute as distribute
from xentdbg.adapters import _tf_keras_private as tf_keras_private
from xentdbg.adapters._keras_flavour import dtype_of, flavour_of, model_error, unreplayed
from xentdbg.adapters._keras_hooks import LayerHooks, joined_replicas, leaf_layers
from xentdbg.adapters._keras_oracle import check_float64_model
from xentdbg.adapters.base import Adapter, Emit, given_batch, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import REPLICA_PREFIX, CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import KerasLoop


class KerasLoopAdapter(Adapter):
    """Runs :class:`xentdbg.KerasLoop`: the user's train step; see the module docstring."""

    PROBE_PHASES = ("loss", "gradients", "activations", "state", "weights")
    ORACLE_PHASES = ("loss", "gradients", "state")

    def __init__(self, setup: KerasLoop, data: DataInfo):
        self.setup, self.data = setup, data
        self.model, self.optimizer = setup.model, setup.optimizer
        flavour = flavour_of(self.model)
        if flavour is None:
            raise UsageError(model_error("KerasLoop", self.model))
        self.flavour, self.keras = flavour, flavour.module
        keras = self.keras
        if not flavour.legacy and keras.backend.backend() != "tensorflow":
            raise UsageError(f"KerasLoop runs TensorFlow train steps; this worker's Keras backend is "
                             f"{keras.backend.backend()!r}.", hint="Drop KERAS_BACKEND for this side.")
        applies = "apply_gradients" if flavour.legacy else "apply"
        if not callable(getattr(self.optimizer, applies, None)):
            raise UsageError(f"KerasLoop optimizer is a {type(self.optimizer).__name__}.",
                             hint=f"Pass the {flavour.label}.optimizers.Optimizer your train_step applies "
                                  "gradients with.")
        if not self.model.built:
            self.model.build((None, *data.input_shape))
        self.strategy = setup.strategy
        self.replicas = 1
        if self.strategy is not None:
            if flavour.legacy:
                raise UsageError("KerasLoop with a strategy runs Keras 3 models; this one is a tf_keras model.",
                                 hint="Build the model with Keras 3, or compare the tf_keras loop on one device.")
            self.replicas = distribute.check_strategy(self.strategy, self.model)
        self._state_index = [i for i, v in enumerate(self.model.non_trainable_variables) if flavour.is_float(v)]
        # tf_keras random layers drawing with legacy stateful ops (Dropout by default)
        self.stateful_random = tf_keras_private.legacy_stateful_random_layers(self.model) if flavour.legacy else []
        self._dry: _DryStep | None = None
        self._retained: dict[int, _Retained] = {}  # the last two steps, full capture only

    # -- description (same tables as KerasFit, so the two pair) ---------------
    def describe(self) -> SideInfo:
        import tensorflow as tf

        nt = self.model.non_trainable_variables
        step = self.setup.train_step
        compiled = hasattr(step, "python_function")
        name = self.flavour.name
        return SideInfo(
            kind="KerasLoop",
            framework={**self.flavour.versions(), "backend": "tensorflow", "tensorflow": tf.__version__,
                       "train_step": "tf.function" if compiled else "eager", **python_info(),
                       **({"strategy": type(self.strategy).__name__, "replicas": str(self.replicas)}
                          if self.strategy is not None else {})},
            params=[TensorSpec(name(v), tuple(v.shape), str(dtype_of(v))) for v in self.model.trainable_variables],
            state=[TensorSpec(name(nt[i]), tuple(nt[i].shape), str(dtype_of(nt[i]))) for i in self._state_index],
            layers=[layer.name for layer in leaf_layers(self.model)],
        )

    def initial_values(self):
        nt = self.model.non_trainable_variables
        return ([np.array(v.numpy()) for v in self.model.trainable_variables],
                [np.array(nt[i].numpy()) for i in self._state_index])

    def set_initial_values(self, params, state) -> None:
        if params is not None:
            for v, a in zip(self.model.trainable_variables, params, strict=True):
                v.assign(a.astype(dtype_of(v)))
        if state is not None:
            nt = self.model.non_trainable_variables
            for i, a in zip(self._state_index, state, strict=True):
                nt[i].assign(a.astype(dtype_of(nt[i])))

    def final_weights(self) -> list[np.ndarray]:
        return [np.array(v.numpy()) for v in self.model.trainable_variables]

    # -- training ----------------------------------------------------------
    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        import tensorflow as tf

        capture = CaptureMode(capture)
        # CaptureMode.FINGERPRINT: no dry copy; flags from the hooks on the real step,
        # loss from its return value
        dry = _DryStep(self) if emit is not None and capture is CaptureMode.FULL else None
        self._dry, self._retained = dry, {}
        hooks = dry.hooks if dry is not None else (LayerHooks(self.model) if emit is not None else None)
        spec = self.data.spec
        for i in range(steps):
            sl = spec.batch_slice(i)
            if self.strategy is not None:
                x, y = distribute.distribute_batch(self.strategy, [self.data.x[sl], self.data.y[sl]])
            else:
                x, y = tf.convert_to_tensor(self.data.x[sl]), tf.convert_to_tensor(self.data.y[sl])
            if dry is not None:
                grads, acts, dry_loss = dry.run(x, y)
                # for evaluate: the optimizer read after the dry copy, which builds it before step 0
                self._retained[i] = _Retained(x, y, dry.snapshot, self.values(self.optimizer.variables),
                                              [self.data.x[sl], self.data.y[sl]])
                self._retained.pop(i - 2, None)
            out = self.setup.train_step(x, y)
            if emit is None:
                continue
            loss = _loss_of(out)
            if dry is not None and (self.flavour.legacy or self.strategy is not None):
                self._check_replayed(i, dry_loss, loss)
            model = self.model
            assert hooks is not None  # installed whenever emit is given
            inputs, digests = batch_fingerprint(self.data.x[sl], self.data.y[sl])
            nt = model.non_trainable_variables
            name = self.flavour.name
            tnames = [name(v) for v in model.trainable_variables]
            record = StepRecord(step=i, flags=dict(hooks.flags), digests=digests, tensors={
                "inputs": inputs,
                **({"activations": acts, "gradients": list(zip(tnames, grads, strict=True))}
                   if capture is CaptureMode.FULL else {}),
                "loss": [("loss", np.asarray(loss))],
                "state": [(name(nt[k]), np.array(nt[k].numpy())) for k in self._state_index],
                "weights": [(n, np.array(v.numpy())) for n, v in zip(tnames, model.trainable_variables)],
            })
            if dry is not None and self.strategy is not None:
                record.replicas = self._replicas(dry, self.data.x[sl], self.data.y[sl])
            emit(record)

    def _replicas(self, dry: _DryStep, x: np.ndarray, y: np.ndarray) -> list[dict[str, list[tuple[str, np.ndarray]]]]:
        """Each replica's samples (per-sample sums of its slice of the global batch ``x``,
        ``y``), loss and local gradients (from the dry copy's last run) and copy of the state
        as it is now, for ``StepRecord.replicas``."""
        nt, name = self.model.non_trainable_variables, self.flavour.name
        copies = [(name(nt[k]), distribute.local_arrays(self.strategy, nt[k])) for k in self._state_index]
        starts = np.cumsum([0, *distribute.shard_sizes(len(x), self.replicas)])
        out = []
        for r in range(self.replicas):
            replica = dict(dry.replicas[r]) if r < len(dry.replicas) else {}
            replica["inputs"] = batch_fingerprint(x[starts[r]:starts[r + 1]], y[starts[r]:starts[r + 1]])[0]
            replica["state"] = [(n, arrays[r]) for n, arrays in copies]
            out.append(replica)
        return out

    def _check_replayed(self, step: int, dry_loss: np.ndarray | None, loss: np.ndarray) -> None:
        """Raise :class:`UsageError` unless the dry copy returned the loss the step
        returned, bitwise (under a strategy: within the rounding of the loss's reduction
        across replicas): otherwise the recorded gradients would not be the ones the step
        applied (tf_keras and strategies; see the module docstring)."""
        if self.strategy is not None and dry_loss is not None:
            # The loss a distributed step returns is reduced across replicas
            # (strategy.reduce: an add_n of the replicas' losses), which Grappler may
            # rewrite otherwise in the dry copy's graph, whose tensors have other
            # consumers: measured 1 ulp apart on some steps, with the captured gradients
            # bitwise the applied ones (tests/replay/test_neutral_capture.py). A step that
            # draws other random numbers in the copy is far outside this bound.
            bound = 4 * self.replicas * float(np.finfo(np.float32).eps) * abs(float(np.asarray(loss).reshape(())))
            if abs(float(np.asarray(dry_loss).reshape(())) - float(np.asarray(loss).reshape(()))) <= bound:
                return
        if dry_loss is None or np.asarray(dry_loss).tobytes() != np.asarray(loss).tobytes():
            if self.strategy is not None and not self.stateful_random:
                raise UsageError(
                    f"KerasLoop under {type(self.strategy).__name__}: at step {step} the copy of the train_step "
                    f"xentdbg ran to capture its gradients returned the loss {_show(dry_loss)}, the step "
                    f"{_show(loss)}; the gradients it captured may not be the ones the step applied.",
                    hint="Draw random numbers with seeded Keras layers (keras.layers.Dropout(seed=...)), not "
                         "tf.random.* ops, or compare with --fingerprint, which runs the step alone.")
            raise unreplayed("KerasLoop", step, dry_loss, loss, self.stateful_random)

    # -- the cross-feed probe -------------------------------------------------
    def evaluate(self, step: int, params: list[np.ndarray], state: list[np.ndarray] | None,
                 grads: list[np.ndarray] | None = None, optimizer: list[np.ndarray] | None = None,
                 batch: list[np.ndarray] | None = None) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Re-run step ``step`` from ``params`` (and ``state``, and ``optimizer``: values of
        ``optimizer.variables``), on its batch or ``batch``; see the module docstring and
        :meth:`xentdbg.adapters.base.Adapter.evaluate`. Every phase is computed."""
        if self.stateful_random:
            # Another run of the dry copy would advance its stateful random kernels and
            # desynchronize it from the steps that follow (see the module docstring).
            raise ValueError(f"layer(s) {', '.join(self.stateful_random)} draw random numbers with "
                             "stateful ops: a re-run cannot draw the masks the step drew")
        kept, dry = self._retained.get(step), self._dry
        if kept is None or dry is None:
            raise ValueError(f"KerasLoop cannot re-run step {step}: it keeps the last two steps of a "
                             f"fully captured train() (kept: {sorted(self._retained)}).")
        x, y = kept.x, kept.y
        global_batch = kept.batch
        if batch is not None:
            import tensorflow as tf

            given = given_batch(batch, *(tf.convert_to_tensor(a) for a in kept.batch))
            global_batch = list(given)
            x, y = (distribute.distribute_batch(self.strategy, list(given)) if self.strategy is not None
                    else (tf.convert_to_tensor(a) for a in given))
        model_vars, opt_vars = self.model.variables, self.flavour.optimizer_variables(self.optimizer)
        now_model, now_opt = self.values(model_vars), self.values(opt_vars)
        try:
            self.restore(model_vars, kept.model_values)
            self.set_initial_values(params, self._given_state(state))
            loss, computed, acts = dry.forward(x, y)
            trainable, nt = self.model.trainable_variables, self.model.non_trainable_variables
            name = self.flavour.name
            result: dict[str, list[tuple[str, np.ndarray]]] = {
                "loss": [("loss", _loss_of(loss))],
                "gradients": [(name(v), g) for v, g in zip(trainable, computed, strict=True)],
                "activations": acts,
                "state": [(name(nt[k]), np.array(nt[k].numpy())) for k in self._state_index],
            }
            if self.strategy is not None:
                for r, replica in enumerate(self._replicas(dry, *global_batch)):
                    result.update({f"{REPLICA_PREFIX}{r}:{phase}": items for phase, items in replica.items()})
            start = self.held_optimizer(step) if optimizer is None else optimizer
            if len(opt_vars) == len(start):  # else the step created optimizer variables
                self.set_initial_values(params, None)  # the dry copy may change weights a step assigns
                for v, value in zip(opt_vars, start):
                    v.assign(np.asarray(value, dtype=dtype_of(v)))  # every replica's copy, in cross-replica context
                if dry.apply(computed if grads is None else grads):
                    result["weights"] = [(name(v), np.array(v.numpy())) for v in trainable]
        finally:
            self.restore(model_vars, now_model)  # bitwise: training goes on from where it was
            self.restore(opt_vars, now_opt)
        return result

    def _given_state(self, state: list[np.ndarray] | None) -> list[np.ndarray] | None:
        """The state :meth:`evaluate` sets. Under a strategy each replica holds its own copy
        (BatchNorm statistics): a given tensor bitwise equal to the first replica's copy, as
        the records hold it, is this side's own and leaves every replica's copy as it was;
        another (the other side's) replaces all copies."""
        if self.strategy is None or state is None:
            return state
        nt = self.model.non_trainable_variables
        own = [distribute.local_arrays(self.strategy, nt[k])[0] for k in self._state_index]
        if all(np.asarray(g).tobytes() == o.tobytes() for g, o in zip(state, own, strict=True)):
            return None
        return state

    def values(self, variables: list) -> list:
        """Each variable's value: a copy of the array, or under a strategy the list of the
        replicas' copies (replicas' BatchNorm statistics may differ)."""
        if self.strategy is None:
            return [np.array(v.numpy(), copy=True) for v in variables]
        return [distribute.local_arrays(self.strategy, v) for v in variables]

    def restore(self, variables: list, values: list) -> None:
        """Set the variables to what :meth:`values` read, bitwise (per replica under a strategy)."""
        for v, value in zip(variables, values, strict=True):
            if self.strategy is None:
                v.assign(value)
            else:
                distribute.assign_local(self.strategy, v, value)

    def held_optimizer(self, step: int) -> list[np.ndarray]:
        """``optimizer.variables`` before step ``step``, kept for the last two steps."""
        kept = self._retained.get(step)
        if kept is None:
            raise ValueError(f"step {step} is no longer held (kept: {sorted(self._retained)})")
        # mirrored optimizer variables are updated alike on every replica: the first copy
        return [np.asarray(a[0] if self.strategy is not None else a) for a in kept.optimizer_values]

    def held_batch(self, step: int) -> list[np.ndarray]:
        kept = self._retained.get(step)
        if kept is None:
            raise ValueError(f"step {step} is no longer held (kept: {sorted(self._retained)})")
        return [np.asarray(a) for a in kept.batch]

    def oracle(self, params: list[np.ndarray], state: list[np.ndarray] | None,
               batch: list[np.ndarray]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """The dry copy of the user's step in float64 (see :meth:`Adapter.oracle`): in
        the float64 worker the setup built the model under ``floatx`` float64, and the
        step runs on the batch widened to float64. It leaves the variables changed; this
        worker never trains."""
        import tensorflow as tf

        check_float64_model(self.flavour, self.model, self._state_index)
        if self.strategy is not None:
            raise ValueError(f"KerasLoop has no float64 re-run under {type(self.strategy).__name__}")
        if self.stateful_random:
            raise ValueError(f"layer(s) {', '.join(self.stateful_random)} draw random numbers with stateful "
                             "ops: a float64 re-run cannot draw the masks the step drew")
        nt = self.model.non_trainable_variables
        if self._dry is None:
            self._dry = _DryStep(self)
        self.set_initial_values(params, state)
        x, y = (np.asarray(a).astype(np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
                for a in batch[:2])
        loss, grads, _ = self._dry.forward(tf.convert_to_tensor(x), tf.convert_to_tensor(y))
        return {"loss": [("loss", _loss_of(loss))],
                "gradients": [(self.flavour.name(v), g)
                              for v, g in zip(self.model.trainable_variables, grads, strict=True)],
                "state": [(self.flavour.name(nt[k]), np.array(nt[k].numpy())) for k in self._state_index]}


@dataclass
class _Retained:
    """What :meth:`KerasLoopAdapter.evaluate` needs to re-run one step."""

    x: Any  # as the step received them (per-replica values under a strategy)
    y: Any
    model_values: list  # model.variables before the step (the dry copy's snapshot, KerasLoopAdapter.values)
    optimizer_values: list  # optimizer.variables before the step (KerasLoopAdapter.values)
    batch: list[np.ndarray]  # the global batch [x, y]


class _DryStep:
    """The user's step with ``optimizer.apply`` (tf_keras: ``apply_gradients``) returning
    gradients instead of applying them."""

    def __init__(self, adapter: KerasLoopAdapter):
        import tensorflow as tf

        self.adapter = adapter
        self.model = adapter.model
        self.hooks = LayerHooks(self.model)
        self._dry = False
        self._applied = True
        self._grads: list = []
        self._applied_vars: list = []  # the variables the step applies gradients to, in its order
        self._local: dict[int, list] = {}  # under a strategy: each replica's (variable, local gradient)
        self.snapshot: list = []  # model.variables before the last run() (KerasLoopAdapter.values)
        self.replicas: list[dict[str, list[tuple[str, np.ndarray]]]] = []  # the last forward()'s, per replica
        optimizer = self.optimizer = adapter.optimizer
        legacy = adapter.flavour.legacy
        self._original_apply = original_apply = optimizer.apply_gradients if legacy else optimizer.apply

        @functools.wraps(original_apply)
        def apply(grads, trainable_variables=None):
            if not self._dry:
                return original_apply(grads, trainable_variables)
            if trainable_variables is not None and len(grads) and not optimizer.built:
                # What apply does first (keras/src/optimizers/base_optimizer.py:498-502, Keras 3.15).
                trainable_variables = list(trainable_variables)
                with adapter.keras.name_scope(optimizer.name, caller=optimizer):
                    optimizer.build(trainable_variables)
                optimizer.built = True
            variables = (trainable_variables if trainable_variables is not None
                         else private.optimizer_trainable_variables(optimizer))
            replica = distribute.replica_id() if adapter.strategy is not None else None
            if replica is not None:
                self._local[replica] = list(zip(variables, grads))
                grads = distribute.all_reduce_sum(list(grads))  # what the optimizer applies
            self._grads = list(zip(variables, grads))
            return None

        @functools.wraps(original_apply)
        def apply_gradients(grads_and_vars, *args, **kwargs):
            if not self._dry:
                return original_apply(grads_and_vars, *args, **kwargs)
            pairs = list(grads_and_vars)
            if pairs:
                # What apply_gradients does first (tf_keras/src/optimizers/optimizer.py:713-717):
                # build, once, under the optimizer's name scope and tf.init_scope.
                with tf.name_scope(kwargs.get("name") or optimizer.name or "optimizer"), tf.init_scope():
                    optimizer.build([v for _, v in pairs])
            self._grads = [(v, g) for g, v in pairs]
            return optimizer.iterations

        if legacy:
            optimizer.apply_gradients = apply_gradients
        else:
            optimizer.apply = apply
        step = adapter.setup.train_step
        python_step = getattr(step, "python_function", step)
        self._compiled = hasattr(step, "python_function")
        if legacy and adapter.stateful_random and not self._compiled:
            raise UsageError(
                f"KerasLoop (tf_keras): layer(s) {', '.join(adapter.stateful_random)} draw random numbers with "
                "TensorFlow's stateful ops and the train_step runs eagerly: eager random ops take their seeds "
                "from a global counter, so a copy of the step run to capture its gradients would change the "
                "masks the step draws.",
                hint="Decorate the train_step with @tf.function, or compare with --fingerprint, which runs the "
                     "step alone.")
        self._jit_compile = private.tf_function_jit_compile(step) if self._compiled else None
        self._apply_fn: Any = None  # optimizer.apply on given gradients, made on first use

        strategy = adapter.strategy

        def in_trainable_order(pairs: list) -> list:
            by_id = {id(v): g for v, g in pairs}  # the step passes model.trainable_variables
            return [tf.zeros_like(adapter.flavour.value(v)) if by_id.get(id(v)) is None
                    else tf.convert_to_tensor(by_id[id(v)]) for v in self.model.trainable_variables]

        def body(x, y):
            self._dry = True
            self._grads, self._local = [], {}
            runs: list = []
            try:
                if strategy is None:
                    with self.hooks.collect() as acts:
                        out = python_step(x, y)
                else:
                    with self.hooks.collect_per_replica(distribute.replica_id) as by_replica, \
                            _observed_run(strategy, runs):
                        out = python_step(x, y)
                    acts = joined_replicas(by_replica)
                # Python runs here at trace time inside a tf.function: whether the step called
                # the optimizer is known then (raised from run(), outside the traced function).
                self._applied = bool(self._grads)
            finally:
                self._dry = False
            self._applied_vars = [v for v, _ in self._grads]
            self._names = [n for n, _ in acts]
            local = [in_trainable_order(self._local[r]) for r in sorted(self._local)]
            losses = _replica_losses(strategy, runs[0]) if strategy is not None and runs else []
            return in_trainable_order(self._grads), [a for _, a in acts], _loss_tensor(out), local, losses

        if self._compiled:
            # Same compilation as the user's step, so the dry copy computes what it computes.
            self._body = tf.function(body, jit_compile=self._jit_compile, reduce_retracing=True)
        else:
            self._body = body

    def forward(self, x, y) -> tuple[Any, list[np.ndarray], list[tuple[str, np.ndarray]]]:
        """Run the dry copy from the variables as they are (and leave them changed):
        the step's returned loss (``_loss_of`` reads it), its gradients in
        ``model.trainable_variables`` order, the layer outputs."""
        grads, acts, loss, local, losses = self._body(x, y)
        name = self.adapter.flavour.name
        names = [name(v) for v in self.model.trainable_variables]
        self.replicas = [{"gradients": [(n, np.array(g)) for n, g in zip(names, replica, strict=True)],
                          **({"loss": [("loss", np.asarray(losses[r]))]} if len(losses) == len(local) else {})}
                         for r, replica in enumerate(local)]
        if not self._applied:
            raise UsageError(
                "The KerasLoop train_step changed the weights without calling optimizer.apply or "
                "optimizer.apply_gradients, so xentdbg cannot see the gradients it used.",
                hint="Apply the gradients with optimizer.apply_gradients(zip(grads, model.trainable_variables)) "
                     "(a v.assign_sub(lr * g) loop trains the same with keras.optimizers.SGD(lr)), or compare "
                     "this setup with --fingerprint, which does not capture gradients.")
        return (None if loss is None else np.asarray(loss), [np.array(g) for g in grads],
                [(n, np.array(a)) for n, a in zip(self._names, acts, strict=True)])

    def run(self, x, y) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]], np.ndarray | None]:
        """:meth:`forward` from the variables as they are, which it then restores:
        gradients, layer outputs, the loss the dry copy returned."""
        variables = self.model.variables
        self.snapshot = snapshot = self.adapter.values(variables)
        try:
            loss, grads, acts = self.forward(x, y)
        finally:
            self.adapter.restore(variables, snapshot)  # bitwise restore: the dry copy leaves no trace
        return grads, acts, loss

    def apply(self, grads: list[np.ndarray]) -> bool:
        """The real ``optimizer.apply`` of ``grads`` (in ``model.trainable_variables``
        order) to the variables the step applies gradients to, compiled like the user's
        step. False (nothing applied) when the step applies to a variable outside
        ``model.trainable_variables``."""
        import tensorflow as tf

        by_id = {id(v): (v, g) for v, g in zip(self.model.trainable_variables, grads, strict=True)}
        if not all(id(v) in by_id for v in self._applied_vars):
            return False
        arrays = [np.asarray(g).astype(dtype_of(v)) for v, g in (by_id[id(u)] for u in self._applied_vars)]
        if self.adapter.strategy is not None:
            values = distribute.first_replica_only(self.adapter.strategy, arrays)
        else:
            values = [tf.convert_to_tensor(a) for a in arrays]
        if self._apply_fn is None:
            variables = list(self._applied_vars)

            def apply(gradients):
                if self.adapter.flavour.legacy:
                    self._original_apply(list(zip(gradients, variables)))
                elif self.adapter.strategy is not None:
                    # The optimizer sums the replicas' gradients before it applies them
                    # (distribute.all_reduce_sum): replica 0 holds the given sum, the others
                    # zeros, so the sum is the given gradients exactly.
                    self.adapter.strategy.run(lambda *g: self._original_apply(list(g), variables), args=gradients)
                else:
                    self._original_apply(gradients, variables)

            self._apply_fn = tf.function(apply, jit_compile=self._jit_compile) if self._compiled else apply
        self._apply_fn(values)
        return True


@contextlib.contextmanager
def _observed_run(strategy: Any, runs: list) -> Iterator[None]:
    """While the dry copy is traced, ``strategy.run`` also appends what it returned (the
    replicas' results) to ``runs``; a Python wrapper on the instance, removed after."""
    original = strategy.run

    @functools.wraps(original)
    def run(fn, args=(), kwargs=None, options=None):
        result = original(fn, args=args, kwargs=kwargs, options=options)
        runs.append(result)
        return result

    strategy.run = run
    try:
        yield
    finally:
        del strategy.run  # the class's method again


def _replica_losses(strategy: Any, result: Any) -> list[Any]:
    """Each replica's loss, from what the first ``strategy.run`` returned (read as
    ``_loss_of`` reads a step's return value); empty when it holds no scalar per replica."""
    value = result
    if isinstance(result, dict):
        value = result.get("loss")
    elif isinstance(result, (tuple, list)) and result:
        value = result[0]
    if value is None:
        return []
    local = distribute.local_results(strategy, value)
    return local if all(getattr(v, "shape", None) is not None and v.shape.num_elements() == 1 for v in local) else []


def _loss_tensor(out: Any) -> Any:
    """Where ``_loss_of`` finds the loss in a step's return value, as a tensor (None
    when it is not one: ``_loss_of`` then says what the step returned)."""
    import tensorflow as tf

    value = out
    if isinstance(out, dict):
        value = out.get("loss")
    elif isinstance(out, (tuple, list)) and out:
        value = out[0]
    try:
        return None if value is None else tf.convert_to_tensor(value)
    except (TypeError, ValueError):
        return None


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


def _show(loss: Any) -> str:
    return "nothing" if loss is None else format(float(np.asarray(loss).reshape(())), ".9g")


def _describe(out: Any) -> str:
    if out is None:
        return "None"
    if isinstance(out, dict):
        return f"a dict with keys {sorted(map(str, out))}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}" + (f" starting with {_describe(out[0])}" if out else "")
    shape = getattr(out, "shape", None)
    return f"a {type(out).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
