"""Check ``KerasFitAdapter.evaluate`` against the records of a captured fit; print JSON.

Usage: python evaluate_check.py SUBSET BATCH STEPS TASK PIXELS SETUP [SETUP ...]

For each setup: runs it plain, then captured (same initial weights) with an ``emit``
that, at each step k, re-runs step k and step k-1 with ``evaluate`` from the side's own
pre-step weights and state (and step k-1 once more with its recorded gradients and its held
optimizer state given)
and compares every phase with the records. Prints one JSON object: per setup, per phase,
whether every comparison was bitwise equal and the largest absolute difference, whether
the captured run ended bitwise where the plain run ended (every model, optimizer and
metrics variable), and the checks on other inputs and after ``train`` returned.

A setup given as ``given-gradients:SETUP`` is checked as the cross-feed calls evaluate
only (:func:`check_given_gradients`).

Also a setup file: :func:`optimizer_options` is the model of ``keras_bn.py`` with the
optimizer options fit honours (loss scaling, clipping, weight decay); :func:`stateless`
a model whose records hold no state.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def optimizer_options(data):
    """keras_bn.py's model under a LossScaleOptimizer around Adam with global_clipnorm and
    weight decay, plus a compiled metric (its variables must be left alone too)."""
    import keras
    from keras_bn import build_model

    import xentdbg

    model = build_model(data, 3)
    inner = keras.optimizers.Adam(1e-2, global_clipnorm=0.5, weight_decay=1e-3)
    # XLA on the JAX backend (fit's default there); the TF backend's capture does not
    # support jit_compile=True (its batch variables change shape).
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(inner), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=keras.backend.backend() == "jax")
    return xentdbg.KerasFit(model, shuffle=False)


def stateless(data):
    """Dense layers only (no BatchNorm, no Dropout: the records hold no state) under SGD
    with Nesterov momentum (optimizer state the cross-feed carries across)."""
    import keras

    import xentdbg

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(data.y.shape[1], activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def check_given_gradients(setup: str, spec, steps: int) -> dict:
    """At every emit, only what the cross-feed asks: evaluate(k) from the pre-step weights
    with the record's gradients and no state. ``bitwise``: loss, gradients, activations
    and weights are the record's; ``train_step_runs``: how often fit's own step ran
    (compiled on its first run) for it."""
    from xentdbg.adapters import make_adapter
    from xentdbg.data import load
    from xentdbg.records import CaptureMode, StepRecord
    from xentdbg.replay.loading import SetupRef, load_function

    info = load(spec)
    adapter = make_adapter(load_function(SetupRef.parse(setup))(info), info)
    weights = adapter.initial_values()[0]
    runs = {"train_step_runs": 0, "bitwise": True, "compared": 0, "state": []}

    def counted(step):
        def run(*args):
            runs["train_step_runs"] += 1
            return step(*args)
        return run

    def emit(record: StepRecord) -> None:
        nonlocal weights
        capture = adapter._capture
        if record.step == 0:  # fit's step as evaluate runs it, on either backend
            for attr in ("_train_step", "_train_step_jax"):
                if hasattr(capture, attr):
                    setattr(capture, attr, counted(getattr(capture, attr)))
        out = adapter.evaluate(record.step, weights, None, [g for _, g in record.tensors["gradients"]])
        for phase in ("loss", "gradients", "activations", "weights"):
            for (_, a), (_, b) in zip(out[phase], record.tensors[phase], strict=True):
                runs["compared"] += 1
                runs["bitwise"] &= np.asarray(a).tobytes() == np.asarray(b).tobytes()
        runs["state"] += [name for name, _ in out["state"]]
        weights = [a for _, a in record.tensors["weights"]]

    adapter.train(steps, emit, capture=CaptureMode.FULL)
    return runs


def _values(adapter) -> list[np.ndarray]:
    """Every variable training uses: the model's, the optimizer's and the metrics'."""
    import keras

    model = adapter.model
    variables = list(model.variables) + list(model.optimizer.variables) + list(model.metrics_variables)
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def check_setup(setup: str, spec, steps: int) -> dict:
    from xentdbg.adapters import make_adapter
    from xentdbg.data import load
    from xentdbg.records import CaptureMode, StepRecord
    from xentdbg.replay.loading import SetupRef, load_function

    started = time.perf_counter()
    info = load(spec)
    plain = make_adapter(load_function(SetupRef.parse(setup))(info), info)
    plain_initial, _ = plain.initial_values()
    plain.train(steps, None)  # run_setup(setup, spec, steps, capture=None), keeping the adapter
    plain_values = _values(plain)

    adapter = make_adapter(load_function(SetupRef.parse(setup))(info), info)
    adapter.set_initial_values(plain_initial, None)  # a second graph-mode model draws others
    initial = adapter.initial_values()
    records: list[StepRecord] = []
    stats: dict[str, dict] = {}
    problems: list[str] = []

    def pre_step(k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if k == 0:
            return initial
        prev = records[k - 1].tensors
        return [a for _, a in prev["weights"]], [a for _, a in prev["state"]]

    def compare(phase: str, got: list, want: list) -> None:
        entry = stats.setdefault(phase, {"bitwise": True, "max_abs_diff": 0.0, "compared": 0})
        if [n for n, _ in got] != [n for n, _ in want]:
            problems.append(f"{phase}: names {[n for n, _ in got]} != {[n for n, _ in want]}")
        for (_, a), (_, b) in zip(got, want, strict=True):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or a.dtype != b.dtype:
                problems.append(f"{phase}: {a.shape} {a.dtype} != {b.shape} {b.dtype}")
                continue
            entry["compared"] += 1
            if a.tobytes() != b.tobytes():
                entry["bitwise"] = False
                entry["max_abs_diff"] = max(entry["max_abs_diff"], float(np.max(np.abs(a.astype(np.float64) - b))))

    def check(k: int, grads: list[np.ndarray] | None = None, optimizer: list[np.ndarray] | None = None) -> dict:
        params, state = pre_step(k)
        out = adapter.evaluate(k, params, state, grads, optimizer)
        for phase in ("loss", "gradients", "activations", "state", "weights"):
            compare(phase if grads is None else f"{phase} (given grads)", out[phase], records[k].tensors[phase])
        return out

    def emit(record: StepRecord) -> None:
        records.append(record)
        k = record.step
        check(k)
        if k > 0:
            check(k - 1)
            # with the optimizer state given too (the one held for that step): the same bits
            check(k - 1, grads=[g for _, g in records[k - 1].tensors["gradients"]],
                  optimizer=adapter.held_optimizer(k - 1))

    adapter.train(steps, emit, capture=CaptureMode.FULL)
    final = adapter.final_weights()
    captured_values = _values(adapter)
    if len(records) != steps:
        problems.append(f"{len(records)} records")

    # After train() returned: the last two steps are still held, older ones are not.
    last = steps - 1
    after = check(last)
    check(last - 1)
    try:
        adapter.evaluate(last - 2, *pre_step(last - 2))
        problems.append("an older step did not raise")
    except ValueError as error:
        if "no longer held" not in str(error):
            problems.append(f"unexpected message: {error}")

    params, state = pre_step(last)
    moved = adapter.evaluate(last, [p * np.float32(1.01) for p in params], state)
    # BatchNorm's moving statistics do not enter the training forward pass, but they are
    # carried into the state the step leaves.
    other_state = adapter.evaluate(last, params, [s + np.float32(0.5) for s in state])
    after_evaluate = _values(adapter)  # evaluate after train() changes nothing either

    return {
        "records": len(records), "stats": stats, "problems": problems,
        "final_equal_plain": len(plain_values) == len(captured_values) and all(
            a.tobytes() == b.tobytes() for a, b in zip(plain_values, captured_values)),
        "unchanged_by_late_evaluate": all(a.tobytes() == b.tobytes() for a, b in
                                          zip(captured_values, after_evaluate, strict=True)),
        "after_train_weights_equal_final": all(w.tobytes() == f.tobytes() for (_, w), f in
                                               zip(after["weights"], final, strict=True)),
        "loss_changed": moved["loss"][0][1].tobytes() != after["loss"][0][1].tobytes(),
        "weights_changed": all(a.tobytes() != b.tobytes() for (_, a), (_, b) in
                               zip(moved["weights"], after["weights"], strict=True)),
        "state_follows": all(a.tobytes() != b.tobytes() for (_, a), (_, b) in
                             zip(other_state["state"], after["state"], strict=True)),
        "loss_same_with_other_state": other_state["loss"][0][1].tobytes() == after["loss"][0][1].tobytes(),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str]) -> None:
    from xentdbg.data import DataSpec

    subset, batch, steps, task, pixels, *setups = argv
    spec = DataSpec(subset=int(subset), batch_size=int(batch), task=task, pixels=pixels)  # type: ignore[arg-type]
    given = "given-gradients:"  # a setup checked with check_given_gradients only
    print(json.dumps({setup: check_given_gradients(setup[len(given):], spec, int(steps)) if setup.startswith(given)
                      else check_setup(setup, spec, int(steps)) for setup in setups}))


if __name__ == "__main__":
    # this process ends with os._exit, as a replay worker does: fit's tf.data iterators are
    # kept, not freed (freeing one can wait seconds: docs/library-behaviour.md)
    from xentdbg._exit import ends_with_fast_exit

    ends_with_fast_exit()
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # the result is printed: skip unloading the frameworks (~1 s of CPU)
