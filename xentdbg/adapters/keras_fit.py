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
- Keras 3, TF backend, in a replay worker: the ``tf.data`` iterators fit opens each epoch
  are kept until the worker's exit, which never frees them, with or without capture
  (:func:`_keras_private.epoch_iterators_kept`, :func:`xentdbg._exit.kept_until_exit`):
  destroying one can stall the process for seconds at an epoch's end. The batches are
  the same.
- :meth:`KerasFitAdapter.evaluate` (the cross-feed probe, full capture only) re-runs a
  step from given weights and state: the same recompute for loss, gradients and
  activations, fit's own ``model.train_step`` (compiled as fit compiles it) for the
  state and weights the step leaves, the model's optimizer for given gradients. On the
  TF backend these run on the real variables, loaded and restored bitwise within one
  graph (``optimizer.stateless_apply`` raises there). For that the capture
  holds, for the last two steps only, the batch, the pre-step non-trainable values
  (RNG seed states included, so dropout masks are the step's), the pre-step metrics
  values (JAX; on TF the loss reads none) and the pre-step optimizer variables
  (see :class:`_Held`).
- ``CaptureMode.FINGERPRINT`` (the first pass of ``compare --fingerprint``): no
  recompute and nothing held for :meth:`KerasFitAdapter.evaluate`. On the TF backend
  the wrapper also stores the loss ``compute_loss`` returned in a shape-less variable
  (measured neutral, ``tests/replay/test_neutral_capture.py``); on the JAX backend the
  loss is recomputed by a forward pass only.

Under a ``tf.distribute`` strategy (a Keras 3 model built in ``strategy.scope()``, TF
backend) fit runs its step in every replica on that replica's slice of the batch. The
wrapped ``compute_loss`` then stores each replica's slice in that replica's own variables
(the replica id is a constant when the step is traced); the recompute runs under
``strategy.run``, each replica from its slice and its own copies of the non-trainable
variables, and sums the local gradients with the optimizer's all-reduce (measured bitwise
the applied gradients); records carry ``StepRecord.replicas``; evaluate saves, loads and
restores every replica's copy of every variable eagerly. The float64 oracle does not run
under a strategy.

Keras 2 (tf_keras) models run through the TF backend's capture, with what differs
read through :mod:`xentdbg.adapters._keras_flavour`. tf_keras has no ``stateless_call``:
its recompute loads the pre-step values into the model's variables, runs the model and
``compute_loss`` under a tape and writes every variable back, in one graph (the
``swap`` of :meth:`_FitCapture._install_tf`). The wrapped ``compute_loss`` also stores
the loss the step computed, and every step checks that the recompute gave the same loss
bitwise: tf_keras's Dropout draws with legacy stateful ops
(:func:`_tf_keras_private.legacy_stateful_random_layers`), which a recompute reproduces
only under a global seed. A recompute that misses raises :class:`UsageError` rather than
record gradients the step did not apply.

Keras internals are reached only through :mod:`xentdbg.adapters._keras_private` (Keras 3)
and :mod:`xentdbg.adapters._tf_keras_private` (tf_keras).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from xentdbg._exit import kept_until_exit
from xentdbg.adapters import _keras_private as private
from xentdbg.adapters import _tf_distribute as distribute
from xentdbg.adapters import _tf_keras_private as tf_keras_private
from xentdbg.adapters._keras_flavour import dtype_of, flavour_of, model_error, unreplayed
from xentdbg.adapters._keras_hooks import LayerHooks, joined_replicas, leaf_layers
from xentdbg.adapters._keras_oracle import check_float64_model
from xentdbg.adapters.base import Adapter, Emit, StopReplay, given_batch, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import REPLICA_PREFIX, CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import FIT_ARGS_OWNED, KerasFit


class KerasFitAdapter(Adapter):
    """Runs :class:`xentdbg.KerasFit`: the user's ``model.fit``; see the module docstring."""

    PROBE_PHASES = ("loss", "gradients", "activations", "state", "weights")
    ORACLE_PHASES = ("loss", "gradients")

    def __init__(self, setup: KerasFit, data: DataInfo):
        self.model, self.data = setup.model, data
        model = self.model
        flavour = flavour_of(model)
        if flavour is None:
            raise UsageError(model_error("KerasFit", model),
                             hint="Return xentdbg.KerasFit(model, ...) with a compiled Keras model "
                                  "(keras, tf.keras, or tf_keras).")
        self.flavour, self.keras = flavour, flavour.module
        keras = self.keras
        self.backend = "tensorflow" if flavour.legacy else keras.backend.backend()
        compiled = tf_keras_private.is_compiled(model) if flavour.legacy else getattr(model, "compiled", False)
        # tf_keras random layers drawing with legacy stateful ops (Dropout by default)
        self.stateful_random = tf_keras_private.legacy_stateful_random_layers(model) if flavour.legacy else []
        if not compiled:
            raise UsageError("KerasFit: the model is not compiled.",
                             hint="Call model.compile(optimizer, loss) in your setup.")
        owned = sorted(set(setup.fit_kwargs) & set(FIT_ARGS_OWNED))
        if owned:
            raise UsageError(f"KerasFit: fit argument(s) {', '.join(owned)} are set by xentdbg.",
                             hint="Remove them; use --subset, --batch-size and --steps instead.")
        # A model built under a tf.distribute strategy's scope trains under it: Keras 3's TF
        # trainer keeps the strategy of its creation (keras/src/backend/tensorflow/trainer.py,
        # ``distribute_strategy``) and runs each step as ``distribute_strategy.run``.
        self.strategy = model.distribute_strategy if distribute.trains_distributed(model) else None
        self.replicas = 1
        if self.strategy is not None:
            if flavour.legacy:
                raise UsageError("KerasFit under a tf.distribute strategy runs Keras 3 models; this one is a "
                                 "tf_keras model.",
                                 hint="Build the model with Keras 3, or compare the tf_keras fit on one device.")
            self.replicas = int(self.strategy.num_replicas_in_sync)
        # tf_keras holds it in a variable (tf_keras/src/engine/training.py:864), Keras 3 an int
        if int(np.asarray(getattr(model, "steps_per_execution", 1) or 1)) != 1:
            raise UsageError("KerasFit: steps_per_execution must be 1 for per-step capture.")
        if not model.built:
            model.build((None, *data.input_shape))
        self.fit_kwargs = dict(setup.fit_kwargs)
        # Float non-trainable variables are model state (BatchNorm moving statistics);
        # integer ones are RNG seed states, compared only through their effects.
        self.state_index = [i for i, v in enumerate(model.non_trainable_variables) if flavour.is_float(v)]
        self._capture: _FitCapture | None = None  # the last full-capture train(), for evaluate
        self._oracle: _FitCapture | None = None  # the float64 oracle's recompute, made on first use

    # -- description -------------------------------------------------------
    def describe(self) -> SideInfo:
        flavour = self.flavour
        fw = {**flavour.versions(), "backend": self.backend, **python_info()}
        if self.backend == "tensorflow":
            import tensorflow as tf

            fw["tensorflow"] = tf.__version__
            fw["jit_compile"] = str(self.model.jit_compile)
            if self.strategy is not None:
                fw.update(strategy=type(self.strategy).__name__, replicas=str(self.replicas))
        elif self.backend == "jax":
            import jax

            fw["jax"] = jax.__version__
        nt = self.model.non_trainable_variables
        return SideInfo(
            kind="KerasFit", framework=fw,
            params=[TensorSpec(flavour.name(v), tuple(v.shape), str(dtype_of(v)))
                    for v in self.model.trainable_variables],
            state=[TensorSpec(flavour.name(nt[i]), tuple(nt[i].shape), str(dtype_of(nt[i])))
                   for i in self.state_index],
            layers=[layer.name for layer in leaf_layers(self.model)],
        )

    def _numpy(self, variables) -> list[np.ndarray]:
        """Copies of the variables' current values."""
        if self.flavour.legacy:
            return [np.array(v.numpy(), copy=True) for v in variables]
        return [np.array(self.keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]

    def initial_values(self):
        nt = self.model.non_trainable_variables
        return (self._numpy(self.model.trainable_variables),
                self._numpy([nt[i] for i in self.state_index]))

    def set_initial_values(self, params, state) -> None:
        if params is not None:
            for v, a in zip(self.model.trainable_variables, params, strict=True):
                v.assign(a.astype(dtype_of(v)))
        if state is not None:
            nt = self.model.non_trainable_variables
            for i, a in zip(self.state_index, state, strict=True):
                nt[i].assign(a.astype(dtype_of(nt[i])))

    def final_weights(self) -> list[np.ndarray]:
        return self._numpy(self.model.trainable_variables)

    # -- training ----------------------------------------------------------
    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        keras = self.keras
        spec = self.data.spec
        epochs = math.ceil(steps / spec.steps_per_epoch)
        capturer = _FitCapture(self, steps, emit, CaptureMode(capture)) if emit is not None else None
        self._capture = capturer if capturer is not None and capturer.capture is CaptureMode.FULL else None
        stopper = _StopAfter(steps)
        kwargs = {"verbose": 0, **self.fit_kwargs}
        user_callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks = user_callbacks + ([capturer.callback(keras)] if capturer else []) + [stopper.callback(keras)]
        # Keras 3 on TensorFlow: destroying an epoch's tf.data iterator can stall fit for
        # seconds; keeping them changes no batch (see private.epoch_iterators_kept). Only
        # in a process that never frees them (a worker: _exit.kept_until_exit).
        kept = kept_until_exit()
        keep = (private.epoch_iterators_kept(kept) if kept is not None and self.backend == "tensorflow"
                and not self.flavour.legacy else contextlib.nullcontext())
        try:
            with keep:
                self.model.fit(self.data.x, self.data.y, batch_size=spec.batch_size, epochs=epochs,
                               callbacks=callbacks, **kwargs)
        except StopReplay:
            pass
        if self.backend == "jax":
            private.jax_state_sync(self.model)

    def evaluate(self, step: int, params: list[np.ndarray], state: list[np.ndarray] | None,
                 grads: list[np.ndarray] | None = None, optimizer: list[np.ndarray] | None = None,
                 batch: list[np.ndarray] | None = None) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Step ``step`` re-run from ``params`` (and ``state``), on the batch fit gave it or
        ``batch``: see :meth:`Adapter.evaluate`.

        Loss, gradients and activations come from the very function the records' come
        from; ``"state"`` and, when ``grads`` is None, ``"weights"`` from fit's own train
        step run from the given values and the optimizer variables held before step
        ``step``; given ``grads`` go through the model's optimizer as fit's step applies
        its own (see :meth:`_FitCapture.evaluate`). Only the last two steps of a
        full-capture :meth:`train` are held; any other step raises :class:`ValueError`."""
        if self._capture is None:
            raise ValueError(f"step {step} is no longer held: evaluate needs a train() with full capture")
        return self._capture.evaluate(step, params, state, grads, optimizer, batch)

    def held_optimizer(self, step: int) -> list[np.ndarray]:
        """``optimizer.variables`` before step ``step`` (iterations, moments), held for the last two steps."""
        held = self._capture._held.get(step) if self._capture is not None else None
        if held is None:
            raise ValueError(f"step {step} is no longer held")
        return [np.asarray(a) for a in held.optimizer]

    def held_batch(self, step: int) -> list[np.ndarray]:
        """The batch fit gave step ``step`` (after fit's own shuffle), held for the last two steps."""
        held = self._capture._held.get(step) if self._capture is not None else None
        if held is None:
            raise ValueError(f"step {step} is no longer held")
        return held.arrays()

    def oracle(self, params: list[np.ndarray], state: list[np.ndarray] | None,
               batch: list[np.ndarray]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Loss and gradients in float64 from the records' own recompute (the loss fit
        differentiates, :meth:`_FitCapture._stateless_loss`), in a worker whose model the
        setup built under ``floatx`` float64 (see :meth:`Adapter.oracle`)."""
        if self.strategy is not None:
            # The recompute below runs the global batch on one device: not what each
            # replica computed (per-replica BatchNorm statistics, Dropout streams).
            raise ValueError(f"KerasFit has no float64 re-run under {type(self.strategy).__name__}")
        model = self.model
        check_float64_model(self.flavour, model, self.state_index)
        if self.stateful_random:
            raise ValueError(f"layer(s) {', '.join(self.stateful_random)} draw random numbers with stateful "
                             "ops: a float64 re-run cannot draw the masks the step drew")
        nt = model.non_trainable_variables
        if self._oracle is None:
            self._oracle = _FitCapture(self, 0, lambda record: None, CaptureMode.FINGERPRINT)
        tv = [np.asarray(a, dtype=dtype_of(v)) for v, a in zip(model.trainable_variables, params, strict=True)]
        ntv = self._numpy(nt)
        if state is not None:
            for i, a in zip(self.state_index, state, strict=True):
                ntv[i] = np.asarray(a, dtype=dtype_of(nt[i]))
        x, y = _float64(batch[0]), _float64(batch[1])
        sw = _float64(batch[2]) if len(batch) > 2 else None
        if self.backend == "tensorflow":
            import tensorflow as tf

            loss, grads, _ = self._oracle._recompute([tf.convert_to_tensor(a) for a in tv],
                                                     [tf.convert_to_tensor(a) for a in ntv], x, y, sw)
        else:
            mv = [v.value for v in model.metrics_variables]
            (loss, _), grads = self._oracle._recompute_jax(tv, ntv, mv, x, y, sw)
        name = self.flavour.name
        return {"loss": [("loss", np.asarray(loss))],
                "gradients": [(name(v), np.asarray(g)) for v, g in zip(model.trainable_variables, grads, strict=True)]}


def _float64(a: Any) -> Any:
    """A batch array for the float64 oracle: floats widened, integers (labels) kept."""
    if a is None:
        return None
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


@dataclass
class _Held:
    """What :meth:`KerasFitAdapter.evaluate` needs to re-run one step: values before the
    step (all non-trainable variables, metrics variables on JAX, optimizer variables) and
    the batch fit used. TF: the tensors the capture already read (no copy); JAX: the
    host copies the observed train function already made, plus the optimizer's."""

    non_trainable: list[Any]
    metrics: Any
    optimizer: list[Any]
    x: Any
    y: Any
    sw: Any

    def arrays(self) -> list[np.ndarray]:
        """The batch, ``[x, y]`` or ``[x, y, sample_weight]``. Under a strategy the held
        values are each replica's slice (and ``non_trainable`` each variable's per-replica
        copies): joined here in replica order, the global batch's order."""
        def whole(a: Any) -> np.ndarray:
            return np.concatenate([np.asarray(s) for s in a]) if isinstance(a, list) else np.asarray(a)
        return [whole(a) for a in (self.x, self.y, self.sw) if a is not None]


def _snapshot(model, value) -> tuple[list, list]:
    """The model's variables as TF tensors, read now (TF backend).

    A read aliases the variable's buffer; TF copies on the next in-place update while a
    read value is alive (``PrepareToUpdateVariable``, tensorflow/core/kernels/
    training_op_helpers.h), so the snapshot keeps its values and the update its result.
    Going through numpy and ``tf.constant`` instead costs two copies of every variable
    (2 ms per step for the case-1 model). ``value``: :meth:`Flavour.value`."""
    import tensorflow as tf

    return ([tf.convert_to_tensor(value(v)) for v in model.trainable_variables],
            [tf.convert_to_tensor(value(v)) for v in model.non_trainable_variables])


def _replica_sum(losses: list[Any]) -> np.ndarray:
    """The replicas' losses added in float32 in replica order: the loss of the global batch,
    each replica's being scaled by 1/replicas (see ``recompute_replicas``)."""
    total = np.float32(0)
    for loss in losses:
        total = np.float32(total + np.asarray(loss, dtype=np.float32).reshape(()))
    return np.asarray(total)


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
        self._pre_optimizer: list[Any] | None = None  # full capture: optimizer variables before the step
        self._held: dict[int, _Held] = {}  # full capture: the last two steps, for evaluate
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
        # One set per replica under a strategy: each replica's compute_loss stores its own
        # slice of the global batch (the replica is known when the step is traced).
        self._stores = [{"x": var(x_dtype), "y": var(tf.float32), "sw": var(tf.float32), "loss": var(tf.float32)}
                        for _ in range(self.adapter.replicas)]
        self._vars = self._stores[0]
        self._has_sw = False
        original = model.compute_loss
        flavour = self.adapter.flavour
        legacy, value = flavour.legacy, flavour.value
        # tf_keras: the step's own loss too, which every full-capture step checks its
        # recompute against (see the module docstring)
        store_loss = legacy or self.capture is CaptureMode.FINGERPRINT

        def observed(training, x, y, sample_weight, compute):
            """Store the batch (and the loss) of fit's training step; compute the loss."""
            of_step = training and not hooks.collecting
            store = self._stores[distribute.replica_id() or 0]
            if of_step:
                store["x"].assign(x)
                store["y"].assign(tf.cast(y, tf.float32))
                if sample_weight is not None:
                    self._has_sw = True
                    store["sw"].assign(tf.cast(sample_weight, tf.float32))
            loss = compute()
            if store_loss and of_step:
                store["loss"].assign(tf.reshape(tf.cast(loss, tf.float32), [-1]))
            return loss

        if legacy:
            # tf_keras/src/engine/training.py:1154  compute_loss(x, y, y_pred, sample_weight)
            # takes no ``training``; test_step calls it too (:1916). fit's validation traces
            # its test function between on_test_begin and on_test_end, where the hooks stop
            # recording (``callback``): a False ``recording`` at trace time is not training.
            @functools.wraps(original)
            def compute_loss(x=None, y=None, y_pred=None, sample_weight=None):
                return observed(hooks.recording, x, y, sample_weight,
                                lambda: original(x, y, y_pred, sample_weight))
        else:
            @functools.wraps(original)
            def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
                return observed(training, x, y, sample_weight,
                                lambda: original(x, y, y_pred, sample_weight, training=training))

        model.compute_loss = compute_loss

        # Variables are loaded and restored in one graph: an assignment copies bits; reads
        # are snapshots, so the records' views of the variables keep their values.
        # Variables are listed at trace time, when fit has created them all.
        def swapped(loads, run):
            """Load each ``(variables, values)`` of ``loads`` into those variables, ``out =
            run()``, write back every model, optimizer and metrics variable; ``out``."""
            every = (list(model.trainable_variables) + list(model.non_trainable_variables)
                     + flavour.optimizer_variables(model.optimizer) + flavour.metrics_variables(model))
            saved = [tf.convert_to_tensor(value(v)) for v in every]
            for variables, values in loads:
                for v, a in zip(variables, values, strict=True):
                    v.assign(a)
            out = run()
            for v, a in zip(every, saved, strict=True):
                v.assign(a)
            return out

        def recompute(tv, ntv, x, y, sw):
            with tf.GradientTape() as tape:
                tape.watch(tv)
                with hooks.collect() as acts:
                    loss = self._stateless_loss(tv, ntv, [v.value for v in flavour.metrics_variables(model)],
                                                x, y, sw)
            grads = tape.gradient(loss, tv)
            self._act_names = [n for n, _ in acts]
            return loss, grads, [a for _, a in acts]

        def recompute_legacy(tv, ntv, x, y, sw):
            """tf_keras has no stateless_call: fit's own forward and loss
            (tf_keras/src/engine/training.py:1147-1148, ``train_step``) on the variables
            loaded with the pre-step values, differentiated as its ``minimize`` does
            (optimizers/optimizer.py:601, ``tape.gradient`` w.r.t. the trainable variables)."""
            tvars = list(model.trainable_variables)

            def run():
                with tf.GradientTape() as tape:
                    with hooks.collect() as acts:
                        loss = original(x, y, model(x, training=True), sw)
                self._act_names = [n for n, _ in acts]
                return loss, tape.gradient(loss, tvars), [a for _, a in acts]
            return swapped([(tvars, tv), (list(model.non_trainable_variables), ntv)], run)

        # Same jit_compile as the user's step (keras/src/backend/tensorflow/trainer.py
        # make_train_function): XLA changes float32 results in the last digits.
        jit = bool(model.jit_compile)
        self._recompute = tf.function(recompute_legacy if legacy else recompute, jit_compile=jit,
                                      reduce_retracing=True)
        strategy = self.adapter.strategy

        if strategy is not None:
            def recompute_replicas(tv, ntv, x, y, sw):
                """Under a strategy: each replica's loss and local gradients, computed as fit's
                step computes them in that replica (``distribute_strategy.run(train_step)``,
                tensorflow/trainer.py:131-133) from its slice of the batch and its own copies of
                the non-trainable variables (``ntv``, ``x``, ``y``, ``sw``: per-replica values),
                and the local gradients summed as the optimizer sums them before it applies them
                (:func:`_tf_distribute.all_reduce_sum`). Keras scales each replica's loss by
                1/replicas (``scale_loss_for_distribution``, keras/src/losses/loss.py:229-243),
                so the replicas' losses add up to the global batch's."""
                def local(tv, ntv, x, y, sw):
                    with tf.GradientTape() as tape:
                        tape.watch(tv)
                        loss = self._stateless_loss(tv, ntv, [v.value for v in flavour.metrics_variables(model)],
                                                    x, y, sw)
                    grads = tape.gradient(loss, tv)
                    return loss, grads, distribute.all_reduce_sum(list(grads))

                with hooks.collect_per_replica(distribute.replica_id) as by_replica:
                    loss, grads, reduced = strategy.run(local, args=(tv, ntv, x, y, sw))
                acts = joined_replicas(by_replica)
                self._act_names = [n for n, _ in acts]
                results = functools.partial(distribute.local_results, strategy)
                return (results(loss), [results(g) for g in grads], [results(g)[0] for g in reduced],
                        [a for _, a in acts])

            self._recompute_replicas = tf.function(recompute_replicas, jit_compile=jit, reduce_retracing=True)
        if self.capture is not CaptureMode.FULL:
            return
        optimizer = model.optimizer
        if legacy:
            # tf_keras builds the optimizer in the first step's apply_gradients, under the
            # optimizer's name scope and tf.init_scope (tf_keras/src/optimizers/optimizer.py:
            # 713-717); build() returns at once when already built (adam.py:143, as the others)
            with model.distribute_strategy.scope(), tf.name_scope(optimizer.name or "optimizer"), tf.init_scope():
                optimizer.build(model.trainable_variables)
        elif not optimizer.built:
            # Without a distribution strategy the TF trainer builds the optimizer while
            # tracing the first step (keras/src/backend/tensorflow/trainer.py:713-718,
            # optimizers/base_optimizer.py:499-502), after step 0's on_train_batch_begin:
            # build it now, as Keras's own _symbolic_build does (trainers/trainer.py:1204,
            # under the strategy's scope, tensorflow/trainer.py:739), so that step 0's
            # optimizer variables can be read before the step. Measured neutral.
            with model.distribute_strategy.scope():
                optimizer.build(model.trainable_variables)

        # evaluate may not use optimizer.stateless_apply: it raises on the TF backend
        # (keras/src/backend/tensorflow/optimizer.py:39-45: the TF optimizer writes the
        # tf.Variables directly, under tf.distribute, where a StatelessScope cannot see the
        # writes). Nearest safe equivalent, each in one graph (``swapped``): load the given
        # values, run fit's own code on the real variables, read the result and write the
        # saved values back. Nothing trains meanwhile.
        def swap(tv, ntv, ov, run):
            """Load ``tv``, ``ntv`` (unless None) and ``ov`` into the model's trainable,
            non-trainable and the optimizer's variables; ``run(tvars, ntvars)``."""
            tvars, ntvars = list(model.trainable_variables), list(model.non_trainable_variables)
            loads = ([(tvars, tv), (flavour.optimizer_variables(optimizer), ov)]
                     + ([(ntvars, ntv)] if ntv is not None else []))
            return swapped(loads, lambda: run(tvars, ntvars))

        def train_step(tv, ntv, ov, data):
            """fit's own step (tensorflow/trainer.py:131-133 runs
            ``distribute_strategy.run(train_step, (data,))``; tf_keras the same,
            tf_keras/src/engine/training.py:1381) from the given values: the weights and
            state it leaves."""
            def run(tvars, ntvars):
                with hooks.collect():  # a re-run: its flags and batch are not fit's step's
                    model.distribute_strategy.run(model.train_step, args=(data,))
                return ([tf.identity(value(v)) for v in tvars],
                        [tf.identity(value(ntvars[i])) for i in self.adapter.state_index])
            return swap(tv, ntv, ov, run)

        def apply(tv, ov, grads):
            """``tv`` after the optimizer applied ``grads`` from ``ov``, as fit's step applies
            them (tensorflow/trainer.py:76-84): fit differentiates the scaled loss and
            ``apply`` unscales, clips and decays; d(scale * loss) = scale * d loss exactly
            for power-of-two scales (LossScaleOptimizer's). tf_keras's step hands the
            gradients of the loss itself to ``apply_gradients`` (optimizer.py:622-623, ``minimize``)."""
            def run(tvars, _):
                given = list(grads) if legacy else [optimizer.scale_loss(g) for g in grads]
                optimizer.apply_gradients(zip(given, tvars, strict=True))
                return [tf.identity(value(v)) for v in tvars]
            return swap(tv, None, ov, run)

        # Compiled as fit compiles its step (tensorflow/trainer.py:142-147). Measured bitwise
        # without XLA; this capture cannot run fit under jit_compile=True on TF (its batch
        # variables change shape inside the compiled step).
        compile_args = {"jit_compile": jit, "reduce_retracing": True}
        self._train_step = train_step if model.run_eagerly else tf.function(train_step, **compile_args)
        self._apply = apply if model.run_eagerly else tf.function(apply, **compile_args)
        if strategy is None:
            return

        # Under a strategy evaluate loads and restores every replica's copy eagerly
        # (_evaluate_replicas): the replicas' copies of the BatchNorm statistics differ, and
        # a read in cross-replica context sees the first replica's only.
        def train_step_replicas(data):
            """fit's own step under the strategy, on a per-replica batch."""
            with hooks.collect():  # a re-run: its flags and batch are not fit's step's
                strategy.run(model.train_step, args=(data,))

        def apply_replicas(grads):
            """The given (already summed) gradients through the optimizer as fit's step
            applies them: replica 0 holds them, the others zeros
            (:func:`_tf_distribute.first_replica_only`), so the optimizer's sum across
            replicas is the given gradients exactly."""
            tvars = list(model.trainable_variables)
            strategy.run(lambda *g: optimizer.apply_gradients(zip([optimizer.scale_loss(a) for a in g], tvars,
                                                                  strict=True)), args=tuple(grads))

        self._train_step_replicas = (train_step_replicas if model.run_eagerly
                                     else tf.function(train_step_replicas, **compile_args))
        self._apply_replicas = apply_replicas if model.run_eagerly else tf.function(apply_replicas, **compile_args)

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

        model, hooks, keras = self.model, self.hooks, self.adapter.keras

        def host_copy(tree):
            return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), tree)

        full = self.capture is CaptureMode.FULL

        def before_step(state, data) -> None:
            self._pre = host_copy(private.jax_train_state_variables(state))
            self._batch = host_copy(tuple(data) if isinstance(data, (tuple, list)) else (data,))
            if full:  # fit donates the state's buffers to the step: evaluate needs a copy
                self._pre_optimizer = host_copy(list(private.jax_train_state_optimizer_variables(state)))

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
        if not full:
            return
        optimizer = model.optimizer

        def train_step(state, data):
            """fit's own step function (jax/trainer.py:123-165) from the given state: all it
            returns, as fit's jitted step (:261-281) returns it. Returning less lets XLA
            fuse across what fit materialises (Adam's moments): measured 1 ulp off."""
            with hooks.collect():  # a re-run: its training flags are not fit's
                return model.train_step(state, data)

        def apply(tv, ov, grads):
            """``tv`` after the optimizer applied ``grads`` from ``ov``, as fit's train_step
            does (jax/trainer.py:148-153, ``stateless_apply`` unscales, clips, decays), fit
            differentiating the loss scaled under the optimizer variables (:84-89);
            d(scale * loss) = scale * d loss exactly for power-of-two scales."""
            with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, ov, strict=True))):
                scaled = [optimizer.scale_loss(g) for g in grads]
            return optimizer.stateless_apply(ov, scaled, tv)[0]

        # Compiled as fit compiles its step (jax/trainer.py:264), without donating the
        # held values (donation changes no result, measured).
        compiled = not model.run_eagerly and model.jit_compile
        self._train_step_jax = jax.jit(train_step) if compiled else train_step
        self._apply_jax = jax.jit(apply) if compiled else apply

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
            import tensorflow as tf

            value = self.adapter.flavour.value
            self._pre = _snapshot(self.model, value)
            strategy = self.adapter.strategy
            if strategy is not None:  # each replica's own copies (BatchNorm statistics part)
                self._pre = (self._pre[0], [distribute.local_tensors(strategy, v)
                                            for v in self.model.non_trainable_variables])
            # Reads alias the buffers, as in _snapshot: no copy unless the step updates them.
            self._pre_optimizer = [tf.convert_to_tensor(value(v))
                                   for v in self.adapter.flavour.optimizer_variables(self.model.optimizer)]

    def on_step_end(self) -> None:
        model = self.model
        pre, batch = self._pre, self._batch
        x: Any
        y: Any
        acts, grads = [], None
        held: _Held | None = None
        replicas: list[dict[str, list[tuple[str, np.ndarray]]]] = []
        if self.adapter.strategy is not None:
            x, y, loss, grads, acts, held, replicas = self._step_end_replicas()
            weights, nt = (_host(t) for t in _snapshot(model, self.adapter.flavour.value))
        elif self.adapter.backend == "tensorflow":
            import tensorflow as tf

            xt, yt = tf.convert_to_tensor(self._vars["x"]), tf.convert_to_tensor(self._vars["y"])
            swt = tf.convert_to_tensor(self._vars["sw"]) if self._has_sw else None
            x, y = _host([xt, yt])
            if self.capture is CaptureMode.FINGERPRINT:
                loss = self._vars["loss"].numpy().reshape(())
            else:
                assert pre is not None and self._pre_optimizer is not None  # on_step_begin snapshots them
                tv, ntv = pre
                loss, grads, acts = self._recompute(tv, ntv, xt, yt, swt)
                if self.adapter.flavour.legacy:
                    self._check_replayed(loss)
                held = _Held(list(ntv), None, self._pre_optimizer, xt, yt, swt)
            weights, nt = (_host(t) for t in _snapshot(model, self.adapter.flavour.value))
        else:
            assert pre is not None and batch is not None  # set by the observed train function
            tv, ntv, mv = pre
            x, y = batch[0], batch[1] if len(batch) > 1 else None
            sw = batch[2] if len(batch) > 2 else None
            if self.capture is CaptureMode.FINGERPRINT:
                loss = self._loss_jax(tv, ntv, mv, x, y, sw)
            else:
                assert self._pre_optimizer is not None  # copied by before_step for full capture
                (loss, acts), grads = self._recompute_jax(tv, ntv, mv, x, y, sw)
                held = _Held(list(ntv), mv, self._pre_optimizer, x, y, sw)
            trainable, non_trainable = private.jax_trainer_state(model)
            weights = [np.asarray(a) for a in trainable]
            nt = [np.asarray(a) for a in non_trainable]
        inputs, digests = batch_fingerprint(np.asarray(x), np.asarray(y))
        name = self.adapter.flavour.name
        tnames = [name(v) for v in model.trainable_variables]
        ntvars = model.non_trainable_variables
        tensors = {
            "inputs": inputs,
            "loss": [("loss", np.asarray(loss))],
            "state": [(name(ntvars[i]), np.asarray(nt[i])) for i in self.adapter.state_index],
            "weights": list(zip(tnames, weights, strict=True)),
        }
        if self.capture is CaptureMode.FULL:
            tensors["activations"] = list(zip(self._act_names, (np.asarray(a) for a in acts), strict=True))
            tensors["gradients"] = list(zip(tnames, (np.asarray(g) for g in grads or []), strict=True))
        record = StepRecord(step=self.step, tensors=tensors, flags=dict(self.hooks.flags), digests=digests,
                            replicas=replicas)
        if held is not None:
            self._held[self.step] = held
            self._held.pop(self.step - 2, None)
        self.step += 1
        self.emit(record)

    def _step_end_replicas(self) -> tuple:
        """:meth:`on_step_end` under a strategy: the global batch (the replicas' slices
        joined), the loss (the replicas' losses summed, in replica order), the applied
        gradients (the local ones summed as the optimizer sums them), the layer outputs over
        the global batch, what evaluate holds, and (full capture) each replica's record for
        ``StepRecord.replicas``: its samples, loss, local gradients and copy of the state."""
        import tensorflow as tf

        strategy = self.adapter.strategy
        read = [{k: tf.convert_to_tensor(v) for k, v in store.items()} for store in self._stores]
        xs, ys = [r["x"] for r in read], [r["y"] for r in read]
        sws = [r["sw"] for r in read] if self._has_sw else None
        x_host, y_host = _host(xs), _host(ys)
        x, y = np.concatenate(x_host), np.concatenate(y_host)
        if self.capture is CaptureMode.FINGERPRINT:
            return x, y, _replica_sum([r["loss"].numpy().reshape(()) for r in read]), None, [], None, []
        assert self._pre is not None and self._pre_optimizer is not None  # on_step_begin snapshots them
        tv, ntv = self._pre
        per = functools.partial(distribute.per_replica, strategy)
        losses, local, grads, acts = self._recompute_replicas(tv, [per(copies) for copies in ntv], per(xs),
                                                              per(ys), per(sws) if sws is not None else None)
        held = _Held(ntv, None, self._pre_optimizer, xs, ys, sws)
        nt = self.model.non_trainable_variables
        copies = [distribute.local_arrays(strategy, nt[i]) for i in self.adapter.state_index]
        replicas = self._replica_records(x_host, y_host, losses, local, copies)
        return x, y, _replica_sum(losses), grads, acts, held, replicas

    def _replica_records(self, xs: list, ys: list, losses: list, local: list, state: list) -> list[dict]:
        """Each replica's record for ``StepRecord.replicas``: its samples (``xs[r]``,
        ``ys[r]``), loss, local gradients (``local``: per variable, per replica) and copy of
        the state (``state``: per state variable, per replica)."""
        adapter, model = self.adapter, self.model
        name, nt = adapter.flavour.name, model.non_trainable_variables
        tnames = [name(v) for v in model.trainable_variables]
        snames = [name(nt[i]) for i in adapter.state_index]
        return [{"inputs": batch_fingerprint(np.asarray(xs[r]), np.asarray(ys[r]))[0],
                 "loss": [("loss", np.asarray(losses[r]))],
                 "gradients": [(n, np.asarray(g[r])) for n, g in zip(tnames, local, strict=True)],
                 "state": [(n, copies[r]) for n, copies in zip(snames, state, strict=True)]}
                for r in range(adapter.replicas)]

    def _check_replayed(self, loss: Any) -> None:
        """Raise :class:`UsageError` unless the recomputed ``loss`` equals, bitwise (as
        float32), the loss fit's step computed: otherwise the recorded gradients would not
        be the ones the step applied (tf_keras; see the module docstring)."""
        import tensorflow as tf

        recomputed = tf.cast(loss, tf.float32).numpy().reshape(())
        stepped = self._vars["loss"].numpy().reshape(())
        if recomputed.tobytes() != stepped.tobytes():
            raise unreplayed("KerasFit", self.step, recomputed, stepped, self.adapter.stateful_random)

    # The cross-feed probe ---------------------------------------------------------
    def evaluate(self, step: int, params: list[np.ndarray], state: list[np.ndarray] | None,
                 grads: list[np.ndarray] | None, optimizer: list[np.ndarray] | None = None,
                 batch: list[np.ndarray] | None = None) -> dict[str, list[tuple[str, np.ndarray]]]:
        """:meth:`KerasFitAdapter.evaluate`: the held step re-run with the records' own
        recompute and fit's own train step, on the batch fit gave it or on ``batch``.
        Nothing here changes a variable training reads afterwards: the JAX functions are
        stateless; the TF ones write back every variable they load (``swap`` in
        :meth:`_install_tf`)."""
        if self.adapter.stateful_random:
            # Another call of the recompute would advance its stateful random kernels and
            # desynchronize it from the steps that follow (see _check_replayed).
            raise ValueError(f"layer(s) {', '.join(self.adapter.stateful_random)} draw random numbers with "
                             "stateful ops: a re-run cannot draw the masks the step drew")
        held = self._held.get(step)
        if held is None:
            raise ValueError(f"step {step} is no longer held: evaluate keeps the last two steps "
                             f"({', '.join(map(str, sorted(self._held))) or 'none yet'})")
        if batch is not None and held.sw is not None:
            raise ValueError("fit weighted this step's samples (sample_weight or class_weight): "
                             "it cannot be re-run on the other side's batch")
        if self.adapter.strategy is not None:
            return self._evaluate_replicas(held, params, state, grads, optimizer, batch)
        if batch is not None:
            bx, by = given_batch(batch, held.x, held.y)
            if self.adapter.backend == "tensorflow":
                import tensorflow as tf

                bx, by = tf.convert_to_tensor(bx), tf.convert_to_tensor(by)
            held = _Held(held.non_trainable, held.metrics, held.optimizer, bx, by, None)
        model = self.model
        tvars, ntvars = model.trainable_variables, model.non_trainable_variables
        if len(params) != len(tvars):
            raise ValueError(f"evaluate got {len(params)} parameters, the model has {len(tvars)}")
        tv = [np.asarray(a, dtype=dtype_of(v)) for v, a in zip(tvars, params, strict=True)]
        ntv = list(held.non_trainable)
        if state is not None:
            for i, a in zip(self.adapter.state_index, state, strict=True):
                ntv[i] = np.asarray(a, dtype=dtype_of(ntvars[i]))
        given = None if grads is None else [np.asarray(g, dtype=dtype_of(v))
                                            for v, g in zip(tvars, grads, strict=True)]
        data = (held.x, held.y) if held.sw is None else (held.x, held.y, held.sw)
        opt = held.optimizer
        if optimizer is not None:
            ovars = self.adapter.flavour.optimizer_variables(model.optimizer)
            if len(optimizer) != len(ovars):
                raise ValueError(f"evaluate got {len(optimizer)} optimizer values, the optimizer has {len(ovars)}")
            opt = [np.asarray(a, dtype=dtype_of(v)) for v, a in zip(ovars, optimizer, strict=True)]
        # fit's own step gives the weights and the state it leaves. Given gradients, the
        # weights are the optimizer's update of those (``_apply``), and the step is run only
        # for the state: a model whose records hold none skips it, and the first re-run
        # skips compiling it (0.1-0.2 s of a tf.function trace on the TF backend).
        needs_step = given is None or bool(self.adapter.state_index)
        new_state: list = []
        if self.adapter.backend == "tensorflow":
            import tensorflow as tf

            opt = [tf.convert_to_tensor(a) for a in opt]

            tvt = [tf.convert_to_tensor(a) for a in tv]
            ntvt = [tf.convert_to_tensor(a) for a in ntv]
            loss, computed, acts = self._recompute(tvt, ntvt, held.x, held.y, held.sw)
            if needs_step:
                weights, new_state = self._train_step(tvt, ntvt, opt, data)
            if given is not None:
                weights = self._apply(tvt, opt, [tf.convert_to_tensor(g) for g in given])
        else:
            (loss, acts), computed = self._recompute_jax(tv, ntv, held.metrics, held.x, held.y, held.sw)
            if needs_step:
                _, (weights, new_nt, _, _) = self._train_step_jax((tv, ntv, opt, held.metrics), data)
                new_state = [new_nt[i] for i in self.adapter.state_index]
            if given is not None:
                weights = self._apply_jax(tv, opt, given)
        name = self.adapter.flavour.name
        tnames = [name(v) for v in tvars]
        return {
            "loss": [("loss", np.asarray(loss))],
            "gradients": list(zip(tnames, (np.asarray(g) for g in computed), strict=True)),
            "activations": list(zip(self._act_names, (np.asarray(a) for a in acts), strict=True)),
            "state": [(name(ntvars[i]), np.asarray(s)) for i, s in zip(self.adapter.state_index, new_state,
                                                                        strict=True)],
            "weights": list(zip(tnames, (np.asarray(w) for w in weights), strict=True)),
        }

    def _evaluate_replicas(self, held: _Held, params: list[np.ndarray], state: list[np.ndarray] | None,
                           grads: list[np.ndarray] | None, optimizer: list[np.ndarray] | None,
                           batch: list[np.ndarray] | None) -> dict[str, list[tuple[str, np.ndarray]]]:
        """:meth:`evaluate` under a strategy. Each replica re-runs its slice (the held
        slices, or the given global batch split as the strategy's pipeline splits it) from
        its own copies of the non-trainable variables as they were before the step; a given
        ``state`` bitwise equal to the first replica's held copy (this side's own, as the
        records hold it) keeps every replica's, another replaces them all. Every replica's
        copy of every model, optimizer and metrics variable is read before and written back
        after, eagerly (a read in cross-replica context sees the first replica's copy only)."""
        adapter, model = self.adapter, self.model
        strategy, flavour = adapter.strategy, adapter.flavour
        tvars, ntvars = model.trainable_variables, model.non_trainable_variables
        ovars = flavour.optimizer_variables(model.optimizer)
        if len(params) != len(tvars):
            raise ValueError(f"evaluate got {len(params)} parameters, the model has {len(tvars)}")
        tv = [np.asarray(a, dtype=dtype_of(v)) for v, a in zip(tvars, params, strict=True)]
        ntv = [list(copies) for copies in held.non_trainable]
        if state is not None and not all(np.asarray(g).tobytes() == np.asarray(ntv[i][0]).tobytes()
                                         for i, g in zip(adapter.state_index, state, strict=True)):
            for i, a in zip(adapter.state_index, state, strict=True):
                ntv[i] = [np.asarray(a, dtype=dtype_of(ntvars[i]))] * adapter.replicas
        opt = held.optimizer if optimizer is None else [np.asarray(a, dtype=dtype_of(v))
                                                        for v, a in zip(ovars, optimizer, strict=True)]
        if batch is not None:
            whole = list(given_batch(batch, *held.arrays()[:2]))
            xs, ys = (distribute.local_results(strategy, v) for v in distribute.distribute_batch(strategy, whole))
            sws = None
        else:
            xs, ys, sws = held.x, held.y, held.sw
        per = functools.partial(distribute.per_replica, strategy)
        x_pr, y_pr, sw_pr = per(xs), per(ys), (per(sws) if sws is not None else None)
        data = (x_pr, y_pr) if sw_pr is None else (x_pr, y_pr, sw_pr)
        every = list(model.variables) + ovars + flavour.metrics_variables(model)
        saved = [distribute.local_arrays(strategy, v) for v in every]
        try:
            losses, local, computed, acts = self._recompute_replicas([_tensor(a) for a in tv], [per(c) for c in ntv],
                                                                     x_pr, y_pr, sw_pr)
            for v, a in zip(tvars, tv, strict=True):
                v.assign(a)  # in cross-replica context: every replica's copy
            for v, copies in zip(ntvars, ntv, strict=True):
                distribute.assign_local(strategy, v, [np.asarray(c) for c in copies])
            for v, a in zip(ovars, opt, strict=True):
                v.assign(np.asarray(a))
            self._train_step_replicas(data)
            weights = [np.array(v.numpy()) for v in tvars]
            new_state = [distribute.local_arrays(strategy, ntvars[i]) for i in adapter.state_index]
            if grads is not None:
                for v, a in zip(list(tvars) + ovars, tv + [np.asarray(a) for a in opt], strict=True):
                    v.assign(a)
                given = [np.asarray(g, dtype=dtype_of(v)) for v, g in zip(tvars, grads, strict=True)]
                self._apply_replicas(distribute.first_replica_only(strategy, given))
                weights = [np.array(v.numpy()) for v in tvars]
        finally:
            for v, copies in zip(every, saved, strict=True):  # bitwise: training goes on from where it was
                distribute.assign_local(strategy, v, copies)
        name = flavour.name
        tnames = [name(v) for v in tvars]
        snames = [name(ntvars[i]) for i in adapter.state_index]
        result = {
            "loss": [("loss", _replica_sum(losses))],
            "gradients": list(zip(tnames, (np.asarray(g) for g in computed), strict=True)),
            "activations": list(zip(self._act_names, (np.asarray(a) for a in acts), strict=True)),
            "state": list(zip(snames, (copies[0] for copies in new_state), strict=True)),
            "weights": list(zip(tnames, weights, strict=True)),
        }
        for r, replica in enumerate(self._replica_records(xs, ys, losses, local, new_state)):
            result.update({f"{REPLICA_PREFIX}{r}:{phase}": items for phase, items in replica.items()})
        return result


def _tensor(a: Any) -> Any:
    import tensorflow as tf

    return tf.convert_to_tensor(a)
