"""Build a probe :class:`Context` from what a replay or a trace diff holds at the step of
the first divergence: both records, both sides' weights and state before that step, and
the dataset (for each side's batch and the per-sample sums)."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.alignment import aligned_record
from xentdbg.compare.divergence import Pairing, StepComparison
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.oracle import Float64Check
from xentdbg.data import DataInfo
from xentdbg.diagnose import diagnose
from xentdbg.diagnose.context import Context, Side
from xentdbg.diagnose.data import _positions
from xentdbg.findings import Diagnosis
from xentdbg.records import SideInfo, StepRecord, batch_fingerprint

Batch = tuple[np.ndarray, np.ndarray]


def _before(info: SideInfo, previous: StepRecord | None, start: tuple[list, list] | None):
    """Weights and state a side held before the step: the previous step's, or the start."""
    if previous is not None:
        return ([(n, np.asarray(a)) for n, a in previous.tensors.get("weights", [])],
                [(n, np.asarray(a)) for n, a in previous.tensors.get("state", [])])
    params, state = start if start is not None else ([], [])
    return ([(s.name, np.asarray(a)) for s, a in zip(info.params, params)],
            [(s.name, np.asarray(a)) for s, a in zip(info.state, state)])


def _matches(record: StepRecord, x: np.ndarray, y: np.ndarray) -> bool:
    _, digests = batch_fingerprint(x, y)
    return record.digests.get("x") == digests["x"] and record.digests.get("y") == digests["y"]


def located_batch(record: StepRecord, data: DataInfo, dataset_sums: np.ndarray) -> Batch | None:
    """The batch ``record``'s step trained on, taken from the dataset: the in-order slice
    of its step when the digests say so, else the samples found at its per-sample sums of
    ``x`` (:func:`~xentdbg.diagnose.data._positions`: fit's shuffled batch, say), when every
    one is found and the batch so rebuilt has the record's exact digests; else None (a
    side that preprocesses its inputs before the step)."""
    sl = data.spec.batch_slice(record.step)
    if _matches(record, data.x[sl], data.y[sl]):
        return data.x[sl], data.y[sl]
    sums = dict(record.tensors.get("inputs", [])).get("x")
    if sums is None:
        return None
    pos = _positions(np.asarray(sums, np.float64), dataset_sums)
    if pos is None or pos.size == 0 or np.any(pos < 0):
        return None
    bx, by = data.x[pos], data.y[pos]
    return (bx, by) if _matches(record, bx, by) else None


def _context(step: StepComparison, history: list[StepComparison], records: tuple[StepRecord, StepRecord],
             previous: tuple[StepRecord | None, StepRecord | None], starts: tuple | None,
             infos: tuple[SideInfo, SideInfo], pairing: Pairing, tolerance: Tolerance, data: DataInfo | None,
             dataset_sums: np.ndarray | None, noise: dict[str, float] | None,
             float64: Float64Check | None) -> Context:
    """The probes' view of ``step``: each side with the batch it trained on; when the two
    trained on the same samples in another order (``step.reordered``), side A's record
    and batch in B's sample order, so that ``ctx.x``, ``ctx.y`` serve both."""
    batches: list[Batch | None] = [None, None]
    if data is not None and dataset_sums is not None:
        batches = [located_batch(r, data, dataset_sums) for r in records]
    recs = list(records)
    perm = step.alignment.perm if step.alignment is not None and step.reordered else None
    if perm is not None:
        recs[0] = aligned_record(recs[0], perm)
        a = batches[0]
        batches[0] = (a[0][perm], a[1][perm]) if a is not None else None
    sides = []
    for k, label in enumerate("AB"):
        weights, state = _before(infos[k], previous[k], starts[k] if starts else None)
        bx, by = batches[k] or (None, None)
        sides.append(Side(label, infos[k], recs[k], weights, state, bx, by))
    x = y = None
    ba, bb = batches
    if ba is not None and bb is not None and np.array_equal(ba[0], bb[0]) and np.array_equal(ba[1], bb[1]):
        x, y = bb  # both sides trained on this batch (in the records' order)
    return Context(step, sides[0], sides[1], pairing, tolerance, x, y, history, noise, float64)


def diagnose_step(step: StepComparison, history: list[StepComparison], records: tuple[StepRecord, StepRecord],
                  previous: tuple[StepRecord | None, StepRecord | None], starts: tuple | None,
                  infos: tuple[SideInfo, SideInfo], pairing: Pairing, tolerance: Tolerance,
                  data: DataInfo | None, noise: dict[str, float] | None = None,
                  float64: Float64Check | None = None) -> Diagnosis:
    """Diagnose the step of the first divergence (see :func:`xentdbg.diagnose.diagnose`).

    At a step whose sides trained on other samples and were re-run on each other's batch
    (``step.realigned``, :class:`~xentdbg.compare.divergence.Realigned`), the data
    finding comes from the recorded step and the rest from the view that shows the
    divergence remaining after alignment (both sides on one batch from one set of
    weights): the data order first, then what else differs."""
    sums = start = None
    if data is not None:
        sums = np.ascontiguousarray(data.x, np.float32).reshape(len(data.x), -1).sum(axis=1, dtype=np.float64)
        start = data.spec.batch_slice(step.step).start
    ctx = _context(step, history, records, previous, starts, infos, pairing, tolerance, data, sums, noise, float64)
    found = diagnose(ctx, sums, start)
    realigned = step.realigned
    view = realigned.deciding if realigned is not None else None
    if realigned is None or realigned.first is None or view is None or realigned.records is None:
        return found
    before = realigned.before or (None, None)
    vctx = _context(view, history, realigned.records, before, starts, infos, pairing, tolerance, data, sums,
                    noise, None)
    more = diagnose(vctx)
    ordered = [f for f in found.findings if f.cause == "different-data"]
    unexplained = [] if more.findings else [f"after alignment, {line}" if k == 0 else line
                                            for k, line in enumerate(more.unexplained)]
    return Diagnosis(ordered + more.findings, unexplained, found.errors + more.errors)
