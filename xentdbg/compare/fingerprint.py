"""Cheap per-tensor fingerprints for the first pass of ``compare --fingerprint``. Pure numpy.

A fingerprint is ``[sum, norm, max|x|, nonfinite, n]``: sum, Euclidean norm and largest
magnitude of the finite elements, the count of non-finite ones, and the size. The check
:func:`fingerprints_agree` is *sound* for the tolerance rule of
:mod:`xentdbg.compare.metrics`: if two tensors of ``n`` elements match
(``max|A-B| <= t`` with ``t = atol + rtol * scale``) then
``|sum_A - sum_B| <= n t``, ``|norm_A - norm_B| <= sqrt(n) t`` and
``|max_A - max_B| <= t``, and their non-finite counts are equal. So a fingerprint that
disagrees marks a step that full comparison also flags; the first pass can only be
late, never early, and the second pass (full capture up to that step) finds the exact
first divergence. Differences invisible to sums, norms and maxima are not seen.
"""

from __future__ import annotations

import math

import numpy as np

from xentdbg.compare.metrics import Tolerance
from xentdbg.records import StepRecord

SIZE = 5
# Phases kept as they are in a fingerprinted record: the inputs are already per-sample
# sums plus exact digests, the loss is a scalar (its fingerprint would be no smaller).
KEPT = ("inputs", "loss")
# Tensors up to this many elements travel as values (a 256 KiB float32 tensor costs
# ~0.7 ms on the pipe): biases and small kernels are compared exactly, element by element,
# where a difference in a few elements is invisible to sums and norms (measured:
# Keras vs optax Adam epsilon, examples/causes/fit_adam.py vs jax_adam.py).
FULL_BELOW = 1 << 16


def fingerprint(a: np.ndarray) -> np.ndarray:
    """``[sum, norm, max|x|, nonfinite, n]`` of ``a``; sum and norm accumulated in float64.

    The common case (all finite) costs a min, a max (which also propagate NaN, so two
    finite results prove every element finite), one float64 copy, its sum, the copy
    squared in place and the sum of that: 0.56-0.59 ms for a 784x1000 float32 kernel (0.69 ms
    with the sum of squares as ``einsum("i,i->")`` over the copy, which runs slower than
    a square and a sum; about 1 ms for the isfinite mask and casting reductions this
    would otherwise take; this project's 2-core machine, 2026-11-24).

    The sum of squares is never ``x @ x``: BLAS ``ddot`` wakes OpenBLAS's threads, whose
    spinning slowed the training step that follows by 3 ms (measured on the case-1 model
    with ``model.fit`` on 2 cores: TensorFlow's threads share them); ``np.multiply`` and
    ``np.sum`` do not call BLAS."""
    a = np.asarray(a)
    flat = a.reshape(-1)
    if flat.size == 0:
        return np.array([0.0, 0.0, 0.0, 0, 0])
    nonfinite = 0
    if a.dtype.kind in "fc":
        lo, hi = flat.min(), flat.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            finite = np.isfinite(flat)
            nonfinite = flat.size - int(np.count_nonzero(finite))
            flat = flat[finite]
            if flat.size == 0:
                return np.array([0.0, 0.0, 0.0, nonfinite, a.size])
            lo, hi = flat.min(), flat.max()
        largest = max(-float(lo), float(hi))
    else:
        largest = float(np.max(np.abs(flat)))
    wide = flat.astype(np.float64)  # a copy (astype copies by default): squared in place below
    total = float(wide.sum())
    np.multiply(wide, wide, out=wide)
    return np.array([total, math.sqrt(float(wide.sum())), largest, nonfinite, a.size])


def fingerprints_agree(fa: np.ndarray, fb: np.ndarray, tol: Tolerance) -> bool:
    """False only where full comparison of the two tensors would fail (see module docstring)."""
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    if fa.shape != (SIZE,) or fb.shape != (SIZE,) or fa[3] != fb[3] or fa[4] != fb[4]:
        return False
    n = fa[4]
    t = tol.atol + tol.rtol * max(fa[2], fb[2])
    slack = 1e-12 * max(abs(fa[0]), abs(fb[0]), fa[1], fb[1], 1.0)  # float64 rounding of the sums
    return bool(abs(fa[2] - fb[2]) <= t + slack and abs(fa[1] - fb[1]) <= math.sqrt(n) * t + slack
                and abs(fa[0] - fb[0]) <= n * t + slack)


def fingerprint_record(record: StepRecord) -> StepRecord:
    """The same record with every tensor outside :data:`KEPT` larger than
    :data:`FULL_BELOW` elements replaced by its fingerprint."""
    tensors, marked = {}, set()
    for phase, items in record.tensors.items():
        out = []
        for name, a in items:
            if phase not in KEPT and np.size(a) > FULL_BELOW:
                out.append((name, fingerprint(a)))
                marked.add((phase, name))
            else:
                out.append((name, a))
        tensors[phase] = out
    return StepRecord(record.step, tensors, dict(record.flags), dict(record.digests), fingerprinted=frozenset(marked))
