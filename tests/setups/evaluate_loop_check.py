"""Train setups with full capture, re-running steps through ``Adapter.evaluate`` from
inside ``emit`` and after ``train``; print one JSON line of what was measured.

Usage: python evaluate_loop_check.py SUBSET BATCH STEPS TASK PIXELS SETUP [SETUP ...]

For each setup (one Keras backend and one graph mode per process: Keras 3 setups may
share a process, a graph-mode tf_keras setup needs its own):

- at the emit of step k, ``evaluate(k)`` and ``evaluate(k - 1)`` from this side's own
  pre-step weights and state, each phase compared with the record of that step:
  ``phases[phase]`` is ``{"bitwise": bool, "max_abs": float}`` over every call;
- ``final_equal``: the run ends bitwise where the plain run (``run_setup(capture=None)``,
  same initial weights) ends;
- ``after``: ``evaluate(last step)`` after ``train`` returned, from the own state and
  from ``state=None`` (the side's own state before the step), compared bitwise;
- ``older_refused``: the step before the last two is no longer kept (ValueError);
- ``fingerprint_refused``: after a fingerprint-mode ``train`` nothing is kept (ValueError);
- ``perturbed_loss_differs``: ``evaluate`` from ``params * 1.01`` gives another loss;
- ``with_grads``: ``evaluate(k, own, own, grads=record's gradients)`` gives the
  record's weights bitwise (only where ``"weights"`` is computed).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from xentdbg._exit import ends_with_fast_exit
from xentdbg.adapters import make_adapter
from xentdbg.data import DataSpec, load
from xentdbg.records import REPLICA_PREFIX, CaptureMode, StepRecord
from xentdbg.replay.loading import SetupRef, load_function
from xentdbg.replay.single import run_setup


def _compare(got: dict, record: StepRecord, out: dict) -> None:
    """Each phase ``got`` holds against the record; a ``replica:<r>:<phase>`` key (a side
    under a strategy) against ``record.replicas[r][phase]``, counted under that key."""
    for phase, pairs in got.items():
        if phase.startswith(REPLICA_PREFIX):
            r, own = phase[len(REPLICA_PREFIX):].split(":", 1)
            want = dict(record.replicas[int(r)][own])
        else:
            want = dict(record.tensors[phase])
        entry = out.setdefault(phase, {"bitwise": True, "max_abs": 0.0, "calls": 0})
        entry["calls"] += 1
        assert [n for n, _ in pairs] == list(want), (phase, [n for n, _ in pairs], list(want))
        for name, value in pairs:
            expected = np.asarray(want[name])
            value = np.asarray(value)
            assert value.shape == expected.shape and value.dtype == expected.dtype, (phase, name)
            entry["bitwise"] &= value.tobytes() == expected.tobytes()
            diff = np.abs(value.astype(np.float64) - expected.astype(np.float64))
            entry["max_abs"] = max(entry["max_abs"], float(diff.max()) if diff.size else 0.0)


def _refused(adapter, step: int, params: list[np.ndarray], state: list[np.ndarray]) -> bool:
    try:
        adapter.evaluate(step, params, state)
    except ValueError:
        return True
    return False


def check(setup: str, spec: DataSpec, steps: int) -> dict:
    started = time.perf_counter()
    plain = run_setup(setup, spec, steps, capture=None)
    info = load(spec)
    adapter = make_adapter(load_function(SetupRef.parse(setup))(info), info)
    adapter.set_initial_values(plain.initial_weights, None)  # a second graph-mode model draws other weights
    initial = adapter.initial_values()
    records: list[StepRecord] = []
    phases: dict = {}

    def pre(k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if k == 0:
            return initial
        rec = records[k - 1]
        return [a for _, a in rec.tensors["weights"]], [a for _, a in rec.tensors["state"]]

    def emit(record: StepRecord) -> None:
        records.append(record)
        for k in (record.step, record.step - 1):
            if k >= 0:
                params, state = pre(k)
                _compare(adapter.evaluate(k, params, state), records[k], phases)

    adapter.train(steps, emit)
    final_equal = [a.tobytes() == b.tobytes() for a, b in zip(plain.final_weights, adapter.final_weights(),
                                                               strict=True)]
    last = steps - 1
    params, state = pre(last)
    after: dict = {}
    got = adapter.evaluate(last, params, state)
    _compare(got, records[last], after)
    _compare(adapter.evaluate(last, params, None), records[last], after)
    perturbed = adapter.evaluate(last, [p * np.float32(1.01) for p in params], state)
    with_grads: dict = {}
    if "weights" in got:
        given = [g for _, g in records[last].tensors["gradients"]]
        _compare({"weights": adapter.evaluate(last, params, state, given)["weights"]}, records[last], with_grads)
        # the optimizer state given too (the one held for that step): the same bits
        _compare({"weights": adapter.evaluate(last, params, state, given, adapter.held_optimizer(last))["weights"]},
                 records[last], with_grads)
    older_refused = _refused(adapter, last - 2, params, state)
    light = make_adapter(load_function(SetupRef.parse(setup))(info), info)
    light.train(2, lambda record: None, capture=CaptureMode.FINGERPRINT)
    return {
        "phases": phases,
        "older_refused": older_refused,
        "fingerprint_refused": _refused(light, 1, params, state),
        "final_equal": all(final_equal),
        "after": {phase: entry["bitwise"] for phase, entry in after.items()},
        "perturbed_loss_differs": float(perturbed["loss"][0][1]) != float(got["loss"][0][1]),
        "with_grads": with_grads.get("weights", {}).get("bitwise"),
        "final_equal_after_probes": all(a.tobytes() == b.tobytes() for a, b in zip(
            plain.final_weights, adapter.final_weights(), strict=True)),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    subset, batch, steps, task, pixels, *setups = sys.argv[1:]
    spec = DataSpec(subset=int(subset), batch_size=int(batch), task=task, pixels=pixels)  # type: ignore[arg-type]
    print(json.dumps({setup: check(setup, spec, int(steps)) for setup in setups}))


if __name__ == "__main__":
    # this process ends with os._exit, as a replay worker does: fit's tf.data iterators are
    # kept, not freed (freeing one can wait seconds: docs/library-behaviour.md)
    ends_with_fast_exit()
    main()
    sys.stdout.flush()
    os._exit(0)  # the result is printed: skip unloading the frameworks (~1 s of CPU)
