"""Build a probe :class:`Context` from what a replay or a trace diff holds at the step of
the first divergence: both records, both sides' weights and state before that step, and
the dataset (for the batch and its per-sample sums)."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import Pairing, StepComparison
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.oracle import Float64Check
from xentdbg.data import DataInfo
from xentdbg.diagnose import diagnose
from xentdbg.diagnose.context import Context, Side
from xentdbg.findings import Diagnosis
from xentdbg.records import SideInfo, StepRecord, batch_fingerprint


def _before(info: SideInfo, previous: StepRecord | None, start: tuple[list, list] | None):
    """Weights and state a side held before the step: the previous step's, or the start."""
    if previous is not None:
        return ([(n, np.asarray(a)) for n, a in previous.tensors.get("weights", [])],
                [(n, np.asarray(a)) for n, a in previous.tensors.get("state", [])])
    params, state = start if start is not None else ([], [])
    return ([(s.name, np.asarray(a)) for s, a in zip(info.params, params)],
            [(s.name, np.asarray(a)) for s, a in zip(info.state, state)])


def diagnose_step(step: StepComparison, history: list[StepComparison], records: tuple[StepRecord, StepRecord],
                  previous: tuple[StepRecord | None, StepRecord | None], starts: tuple | None,
                  infos: tuple[SideInfo, SideInfo], pairing: Pairing, tolerance: Tolerance,
                  data: DataInfo | None, noise: dict[str, float] | None = None,
                  float64: Float64Check | None = None) -> Diagnosis:
    """Diagnose the step of the first divergence (see :func:`xentdbg.diagnose.diagnose`)."""
    sides = []
    for k, label in enumerate("AB"):
        weights, state = _before(infos[k], previous[k], starts[k] if starts else None)
        sides.append(Side(label, infos[k], records[k], weights, state))
    x = y = sums = start = None
    if data is not None:
        sl = data.spec.batch_slice(step.step)
        bx, by = data.x[sl], data.y[sl]
        _, digests = batch_fingerprint(bx, by)
        if all(r.digests.get("x") == digests["x"] and r.digests.get("y") == digests["y"] for r in records):
            x, y = bx, by  # both sides trained on the in-order batch: the probes may use it
        sums = np.ascontiguousarray(data.x, np.float32).reshape(len(data.x), -1).sum(axis=1, dtype=np.float64)
        start = sl.start
    ctx = Context(step, sides[0], sides[1], pairing, tolerance, x, y, history, noise, float64)
    return diagnose(ctx, sums, start)
