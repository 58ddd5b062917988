"""Which samples two batches hold, and how to line them up. Pure numpy, no I/O.

Capture records each batch as per-sample sums of ``x`` and ``y`` (float64 sums of the
float32 values, :func:`xentdbg.records.batch_fingerprint`) and exact digests. Two sides
fed the same samples in another order (``model.fit``'s default ``shuffle=True`` over a
single batch) hold the same multiset of per-sample keys ``(Σx_i, Σy_i)``; a permutation
``π`` with ``A[π[j]] = B[j]`` then lines A's per-sample tensors up with B's.

A mean loss over the batch, ``L = 1/N Σ_i ℓ(x_i, y_i)``, and its gradients do not depend
on the order of the ``i`` (up to float32 summation rounding, which the tolerance and the
float64 oracle judge); per-sample tensors (the inputs' sums, layer outputs whose leading
axis is the batch) do, and are compared after ``π`` (:func:`aligned_record`).

Two samples are taken to be the same when both their sums are bitwise equal: the same
float32 values summed by the same numpy code give the same float64 bits. Distinct
samples with equal sums (a duplicate image, or a coincidence) are paired in batch
order; a wrong pairing of distinct samples shows as a difference, never hides one.

One-hot labels all sum to 1, so for them ``Σy_i`` cannot tell one label from another:
the same images with their labels mixed up align too. Such a step still differs where
it matters (the loss and gradients of other labels), and the diagnosis, which has the
dataset, checks each side's labels sample by sample
(:func:`xentdbg.diagnose.data.different_data`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from xentdbg.records import StepRecord

ORDER = "order"
"""Same samples in another order: :attr:`Alignment.perm` lines them up."""
SAMPLES = "samples"
"""Other samples (of the same shape): the batches can only be compared by re-running a
side's step on the other side's batch (the engine's realignment)."""
SIZES = "sizes"
"""The batches hold different numbers of samples."""


@dataclass(frozen=True)
class Alignment:
    """How the batch of side A relates to side B's at one step, when their digests differ.

    ``kind``: :data:`ORDER`, :data:`SAMPLES` or :data:`SIZES`. ``perm`` (ORDER only):
    ``perm[j]`` is the position in A's batch of B's ``j``-th sample, so ``A[perm] = B``.
    ``common``: how many samples (counted with multiplicity) the two batches share."""

    kind: str
    size_a: int
    size_b: int
    common: int
    perm: np.ndarray | None = None

    @property
    def moved(self) -> int:
        """ORDER: how many samples sit at another position on the two sides."""
        return 0 if self.perm is None else int(np.count_nonzero(self.perm != np.arange(self.perm.size)))

    def describe(self) -> str:
        if self.kind == ORDER:
            return (f"the two sides trained on the same {self.size_b} samples in another order "
                    f"({self.moved} of {self.size_b} at another position; matched by their per-sample sums of x "
                    "and y)")
        if self.kind == SIZES:
            return f"the batches hold {self.size_a} (A) and {self.size_b} (B) samples"
        return f"{self.common} of {self.size_b} samples are in both batches"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size_a": self.size_a, "size_b": self.size_b, "common": self.common,
                "moved": self.moved if self.kind == ORDER else None}


def _keys(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    return list(zip(np.asarray(x, np.float64).tolist(), np.asarray(y, np.float64).tolist()))


def align(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray) -> Alignment:
    """The alignment of A's batch to B's from both sides' per-sample sums of ``x`` and ``y``.

    ORDER when the multisets of keys ``(Σx_i, Σy_i)`` are equal; ``perm`` pairs the
    ``k``-th smallest key of A with the ``k``-th smallest of B (a stable sort: equal keys
    pair in batch order), so ``A[perm[j]]`` has B's ``j``-th key."""
    xa, ya, xb, yb = (np.asarray(v, np.float64).ravel() for v in (xa, ya, xb, yb))
    na, nb = xa.size, xb.size
    if ya.size != na or yb.size != nb:
        raise ValueError("per-sample sums of x and y differ in length")
    common = sum((Counter(_keys(xa, ya)) & Counter(_keys(xb, yb))).values())
    if na != nb:
        return Alignment(SIZES, na, nb, common)
    if common != nb:
        return Alignment(SAMPLES, na, nb, common)
    order_a = np.lexsort((ya, xa))  # sorts by x, then y; stable
    order_b = np.lexsort((yb, xb))
    perm = np.empty(nb, dtype=np.int64)
    perm[order_b] = order_a
    return Alignment(ORDER, na, nb, common, perm)


def alignment_of(a: StepRecord, b: StepRecord) -> Alignment | None:
    """The alignment of two records' batches, or None when their digests agree (or a
    record holds no per-sample sums)."""
    if a.digests.get("x") == b.digests.get("x") and a.digests.get("y") == b.digests.get("y"):
        return None
    ia, ib = dict(a.tensors.get("inputs", [])), dict(b.tensors.get("inputs", []))
    if not all(k in ia and k in ib for k in ("x", "y")):
        return None
    if any(("inputs", k) in r.fingerprinted for r in (a, b) for k in ("x", "y")):
        return None  # not per-sample sums (capture keeps them: xentdbg.compare.fingerprint.KEPT)
    return align(np.asarray(ia["x"]), np.asarray(ia["y"]), np.asarray(ib["x"]), np.asarray(ib["y"]))


def per_sample(shape: tuple[int, ...], size: int) -> bool:
    """Whether a tensor of ``shape`` is taken as per-sample in a batch of ``size``: its
    leading axis is the batch. (A layer output whose leading axis merely equals the
    batch size would be permuted too: a difference it then shows is reported as
    such; layer outputs locate, they never decide.)"""
    return len(shape) >= 1 and shape[0] == size


def aligned_record(record: StepRecord, perm: np.ndarray) -> StepRecord:
    """``record`` (side A's) in side B's sample order: the inputs' per-sample sums and
    every per-sample layer output (:func:`per_sample`) taken at ``perm``. Loss,
    gradients, state and weights are the batch's, whatever its order, and stay as they
    are; so do tensors held as fingerprints (sum, norm and max|x| are order-free)."""
    n = perm.size
    tensors = dict(record.tensors)
    for phase in ("inputs", "activations"):
        if phase not in tensors:
            continue
        tensors[phase] = [(name, np.asarray(t)[perm] if (phase, name) not in record.fingerprinted
                           and per_sample(np.shape(t), n) else t) for name, t in tensors[phase]]
    return StepRecord(record.step, tensors, dict(record.flags), dict(record.digests), record.fingerprinted)
