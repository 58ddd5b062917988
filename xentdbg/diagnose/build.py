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
from xentdbg.diagnose.data import dataset_positions
from xentdbg.findings import Diagnosis
from xentdbg.records import SideInfo, StepRecord, batch_fingerprint

Batch = tuple[np.ndarray, np.ndarray | None]


def _before(info: SideInfo, previous: StepRecord | None, start: tuple[list, list] | None):
    """Weights and state a side held before the step: the previous step's, or the start."""
    if previous is not None:
        return ([(n, np.asarray(a)) for n, a in previous.tensors.get("weights", [])],
                [(n, np.asarray(a)) for n, a in previous.tensors.get("state", [])])
    params, state = start if start is not None else ([], [])
    return ([(s.name, np.asarray(a)) for s, a in zip(info.params, params)],
            [(s.name, np.asarray(a)) for s, a in zip(info.state, state)])


def _digest_of(a: np.ndarray) -> str:
    return batch_fingerprint(a, np.zeros((len(a), 1), np.float32))[1]["x"]


def located_batch(record: StepRecord, data: DataInfo, dataset_sums: np.ndarray) -> Batch | None:
    """The batch ``record``'s step trained on, taken from the dataset: ``(x, y)``.

    ``x``: the in-order slice of its step when its digest says so, else the samples
    found at the record's per-sample sums of ``x`` (:func:`~xentdbg.diagnose.data.dataset_positions`:
    fit's shuffled batch, say), when every one is found and the images so rebuilt have the
    record's exact ``x`` digest; else None (a side that preprocesses its inputs before the
    step). ``y``: those samples' labels when they have the record's exact ``y`` digest,
    else None: the side fed its images with other labels."""
    sl = data.spec.batch_slice(record.step)
    want_x, want_y = record.digests.get("x"), record.digests.get("y")
    if _digest_of(data.x[sl]) == want_x:
        pos: np.ndarray | slice = sl
    else:
        sums = dict(record.tensors.get("inputs", [])).get("x")
        if sums is None:
            return None
        found = dataset_positions(np.asarray(sums, np.float64), dataset_sums)
        if found is None or found.size == 0 or np.any(found < 0) or _digest_of(data.x[found]) != want_x:
            return None
        pos = found
    bx, by = data.x[pos], data.y[pos]
    labels = batch_fingerprint(bx, by)[1]["y"] == want_y
    return bx, by if labels else None


def _as_probes_see(batch: Batch | None, data: DataInfo) -> Batch | None:
    """A batch as the probes reason about it, whatever layout and label form the setups
    took: ``x`` flat ``(N, 784)``, ``y`` one-hot (or ``(N, 1)`` binary) float32."""
    if batch is None:
        return None
    x, y = batch
    return x.reshape(len(x), -1), data.dense_labels(y) if y is not None else None


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
        batches = [_as_probes_see(located_batch(r, data, dataset_sums), data) for r in records]
    recs = list(records)
    perm = step.alignment.perm if step.alignment is not None and step.reordered else None
    if perm is not None:
        recs[0] = aligned_record(recs[0], perm)
        a = batches[0]
        batches[0] = (a[0][perm], a[1][perm] if a[1] is not None else None) if a is not None else None
    sides = []
    for k, label in enumerate("AB"):
        weights, state = _before(infos[k], previous[k], starts[k] if starts else None)
        bx, by = batches[k] or (None, None)
        sides.append(Side(label, infos[k], recs[k], weights, state, bx, by))
    x = y = None
    (xa, ya), (xb, yb) = batches[0] or (None, None), batches[1] or (None, None)
    if (xa is not None and xb is not None and ya is not None and yb is not None
            and np.array_equal(xa, xb) and np.array_equal(ya, yb)):
        x, y = xb, yb  # both sides trained on this batch (in the records' order)
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
