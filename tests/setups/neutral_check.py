"""Capture-neutrality checks, several in one process (one Keras backend per process); print
one JSON line: the list of each check's result, in order.

Usage: python neutral_check.py CHECK [CHECK ...], each CHECK a JSON object:

- ``{"check": "neutral", "setup", "subset", "batch", "steps", "task", "pixels", "mode"}``
  (``mode``: ``full`` or ``fingerprint``): run the setup plain and captured in this
  process from the same initial weights; ``equal``: whether each final weight is bitwise
  equal, ``last_weights_equal``: whether the last record's weights are the final ones.
- ``{"check": "replicas", "setup", "subset", "batch", "steps", "task", "pixels"}``: as
  ``neutral`` (full capture) for a setup trained under a ``tf.distribute`` strategy, comparing
  every replica's copy of every model variable (replicas' BatchNorm copies part);
  ``equal``: per variable, whether all its copies are bitwise equal, ``last_state_equal``:
  whether the last record's per-replica state is the final copies, ``oracle_refused``:
  whether the adapter refuses the float64 re-run (``ValueError``).
- ``{"check": "split", "setup", "batches"}``: load the setup (which sets up its strategy), then
  for each global batch size, whether ``_tf_distribute.distribute_batch`` gives every replica
  the samples ``strategy.experimental_distribute_dataset`` over ``Dataset.batch(size)`` gives it.
- ``{"check": "refused", "setup", "subset", "batch", "steps", "task", "pixels"}``: full
  capture of a setup that it must refuse; the ``UsageError`` message and hint.
- ``{"check": "gradients", "setup", "subset", "batch", "steps", "pixels", "lr"}``: a plain
  SGD setup (no momentum) with full capture; at every step after the first, whether
  ``w_after == w_before - lr * captured_gradient`` bitwise, for every parameter.

Each check builds its own models (Keras seeds them in the setup), so a check does not
depend on the checks before it in the process; the plain and captured runs of one check
start from the plain run's initial weights (a second graph-mode model in one process
draws different ones).
"""

import json
import os
import sys

import numpy as np

from xentdbg.data import DataSpec
from xentdbg.records import CaptureMode
from xentdbg.replay.single import run_setup


def neutral(job: dict) -> dict:
    spec = DataSpec(subset=job["subset"], batch_size=job["batch"], task=job["task"], pixels=job["pixels"])
    plain = run_setup(job["setup"], spec, job["steps"], capture=None)
    captured = run_setup(job["setup"], spec, job["steps"], capture=CaptureMode(job["mode"]),
                         init_params=plain.initial_weights)
    equal = [a.tobytes() == b.tobytes() for a, b in zip(plain.final_weights, captured.final_weights, strict=True)]
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(plain.final_weights, captured.final_weights))
    last_weights_equal = all(r.tobytes() == w.tobytes() for (_, r), w in
                             zip(captured.records[-1].tensors["weights"], captured.final_weights, strict=True))
    return {"equal": equal, "records": len(captured.records), "max_diff": max_diff,
            "last_weights_equal": last_weights_equal}


def gradients(job: dict) -> dict:
    fused = os.environ.get("KERAS_BACKEND") == "jax"  # XLA fuses w - lr*g into one FMA; TF does two roundings
    lr = np.float32(job["lr"])
    run = run_setup(job["setup"], DataSpec(subset=job["subset"], batch_size=job["batch"], pixels=job["pixels"]),
                    job["steps"])
    checked, mismatches = 0, []
    for prev, rec in zip(run.records, run.records[1:]):
        for (name, w0), (_, g), (_, w1) in zip(prev.tensors["weights"], rec.tensors["gradients"],
                                               rec.tensors["weights"], strict=True):
            checked += 1
            if fused:
                expected = (w0.astype(np.float64) - np.float64(lr) * g.astype(np.float64)).astype(np.float32)
            else:
                expected = w0 - lr * g
            if expected.tobytes() != w1.tobytes():
                mismatches.append([rec.step, name, float(np.abs(expected - w1).max())])
    return {"records": len(run.records), "checked": checked, "mismatches": mismatches}


def refused(job: dict) -> dict:
    """Full capture of ``job["setup"]``: the error message it stops with (None: it ran)."""
    from xentdbg.errors import UsageError

    spec = DataSpec(subset=job["subset"], batch_size=job["batch"], task=job["task"], pixels=job["pixels"])
    try:
        run_setup(job["setup"], spec, job["steps"])
    except UsageError as e:
        return {"error": e.message, "hint": e.hint}
    return {"error": None}


def replicas(job: dict) -> dict:
    from xentdbg.adapters import _tf_distribute, make_adapter
    from xentdbg.data import load
    from xentdbg.replay.loading import SetupRef, load_function

    spec = DataSpec(subset=job["subset"], batch_size=job["batch"], task=job["task"], pixels=job["pixels"])

    def run(capture: bool, init: list | None = None):
        info = load(spec)
        adapter = make_adapter(load_function(SetupRef.parse(job["setup"]))(info), info)
        if init is not None:
            adapter.set_initial_values(init, None)
        initial, _ = adapter.initial_values()
        records: list = []
        adapter.train(job["steps"], records.append if capture else None)
        copies = [_tf_distribute.local_arrays(adapter.strategy, v) for v in adapter.model.variables]
        return initial, copies, records, adapter

    initial, plain, _, _ = run(False)
    _, captured, records, adapter = run(True, initial)
    equal = [all(a.tobytes() == b.tobytes() for a, b in zip(p, c, strict=True))
             for p, c in zip(plain, captured, strict=True)]
    nt = adapter.model.non_trainable_variables
    state_index = getattr(adapter, "state_index", None) or adapter._state_index  # KerasFit's, KerasLoop's
    final = {adapter.flavour.name(nt[k]): _tf_distribute.local_arrays(adapter.strategy, nt[k])
             for k in state_index}
    last = records[-1].replicas
    last_state_equal = len(last) == adapter.replicas and all(
        dict(rep["state"])[n].tobytes() == copies[r].tobytes()
        for r, rep in enumerate(last) for n, copies in final.items())
    parted = any(any(c.tobytes() != copies[0].tobytes() for c in copies[1:]) for copies in final.values())
    try:  # a float64 re-run of the global batch on one device is not what the replicas computed
        adapter.oracle(initial, None, [adapter.data.x[:job["batch"]], adapter.data.y[:job["batch"]]])
        oracle_refused = False
    except ValueError:
        oracle_refused = True
    return {"equal": equal, "records": len(records), "replicas": len(last), "last_state_equal": last_state_equal,
            "state_copies_part": parted, "oracle_refused": oracle_refused}


def split(job: dict) -> dict:
    import tensorflow as tf

    from xentdbg.adapters import _tf_distribute, make_adapter
    from xentdbg.data import load
    from xentdbg.replay.loading import SetupRef, load_function

    info = load(DataSpec(subset=100, batch_size=10, task="digits", pixels="unit"))
    strategy = make_adapter(load_function(SetupRef.parse(job["setup"]))(info), info).strategy
    out = {}
    for size in job["batches"]:
        x = np.arange(size * 3, dtype=np.float32).reshape(size, 3)
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(size)
        pipeline = next(iter(strategy.experimental_distribute_dataset(dataset)))
        (ours,) = _tf_distribute.distribute_batch(strategy, [x])
        theirs = [np.asarray(v) for v in strategy.experimental_local_results(pipeline)]
        mine = [np.asarray(v) for v in strategy.experimental_local_results(ours)]
        out[str(size)] = {"sizes": [len(v) for v in theirs], "equal": len(theirs) == len(mine) and all(
            a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in zip(theirs, mine))}
    return out


CHECKS = {"neutral": neutral, "replicas": replicas, "split": split, "gradients": gradients, "refused": refused}

if __name__ == "__main__":
    jobs = [json.loads(arg) for arg in sys.argv[1:]]
    print(json.dumps([CHECKS[job["check"]](job) for job in jobs]))
    sys.stdout.flush()
    os._exit(0)  # the result is printed: skip unloading the frameworks (~1 s of CPU)
