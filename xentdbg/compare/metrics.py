"""Per-tensor difference metrics and the tolerance rule. Pure numpy, no I/O.

A tensor pair *matches* when

    max|A - B| <= atol + rtol * max(|A|, |B|)

over finite elements (the tolerance scales with the tensor's magnitude, as gradient
checks usually do), and every non-finite element is the same non-finite value on both
sides (NaN with NaN, +inf with +inf). NaN or Inf on one side only is a divergence.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

# Measured (bench-free, tests/test_case1.py): the same float32 network on JAX/XLA and on
# TensorFlow/Eigen differs by up to 7e-5 of a tensor's scale after 9 steps of case 1
# (summation order in a 784-term matmul on 0..255 pixels). The real bugs xentdbg hunts
# differ by 1e-2 and more. rtol=1e-3 leaves a 14x margin over that noise.
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-6


@dataclass(frozen=True)
class Tolerance:
    """``rtol`` and ``atol`` of the rule in the module docstring.

    Defaults to rtol=1e-3, atol=1e-6: above the float32 noise between frameworks
    (up to 7e-5 of a tensor's scale after 10 steps of case 1), below real differences."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    phase_rtol: tuple[tuple[str, float], ...] = ()  # per-phase overrides (``--calibrate``)

    def for_phase(self, phase: str) -> Tolerance:
        """The tolerance that applies to tensors of ``phase``."""
        rtol = dict(self.phase_rtol).get(phase)
        return self if rtol is None else Tolerance(rtol=rtol, atol=self.atol)

    def describe(self) -> str:
        rule = f"max|A-B| <= {self.atol:g} + {self.rtol:g}*max(|A|,|B|)"
        if self.phase_rtol:
            rule += " (rtol " + ", ".join(f"{p} {r:g}" for p, r in self.phase_rtol) + ")"
        return rule


@dataclass(frozen=True)
class Summary:
    """Shape, dtype and value statistics of one tensor (finite elements only)."""

    shape: tuple[int, ...]
    dtype: str
    min: float
    max: float
    mean: float
    std: float
    norm: float
    nonfinite: int

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TensorMetrics:
    """How two tensors differ.

    - ``max_abs``: ``max|A-B|`` over elements finite on both sides.
    - ``max_rel``: ``max |A-B| / max(|A|,|B|)`` over those elements (0 where both are 0).
    - ``cosine``: ``<A,B> / (|A| |B|)`` over those elements (1 when both are all zero).
      ``max_rel`` and ``cosine`` are None when only :func:`screen_metrics` ran (the pair
      was within tolerance, or a report does not show it).
    - ``scale``: ``max(|A|,|B|)`` over those elements, the scale ``rtol`` multiplies.
    - ``nonfinite_a`` / ``nonfinite_b``: NaN/Inf counts; ``nonfinite_mismatch``: positions
      where the two sides are not the same non-finite value.
    - ``finite_pairs``: how many positions are finite on both sides, of ``size``: the
      differences above cover those only. With none (a NaN loss against 39.6), ``max_abs``
      and ``max_rel`` are NaN and ``cosine`` None: there is no difference to measure, and
      the non-finite counts decide.
    - ``same_shape``: False when shapes differ (then nothing else is meaningful).
    """

    max_abs: float
    max_rel: float | None
    cosine: float | None
    scale: float
    nonfinite_a: int
    nonfinite_b: int
    nonfinite_mismatch: int
    same_shape: bool = True
    bitwise_equal: bool = False
    finite_pairs: int = 0
    size: int = 0

    @property
    def partial(self) -> bool:
        """The differences cover only some positions: the others are non-finite on a side."""
        return self.finite_pairs < self.size

    def within(self, tol: Tolerance) -> bool:
        if not self.same_shape or self.nonfinite_mismatch:
            return False
        return self.max_abs <= tol.atol + tol.rtol * self.scale

    def needed_atol(self, tol: Tolerance) -> float:
        """Smallest ``atol`` that would have passed, keeping ``tol.rtol`` (inf if none would)."""
        if not self.same_shape or self.nonfinite_mismatch:
            return math.inf
        return max(0.0, self.max_abs - tol.rtol * self.scale)

    def needed_rtol(self, tol: Tolerance) -> float:
        """Smallest ``rtol`` that would have passed, keeping ``tol.atol`` (inf if none would)."""
        if not self.same_shape or self.nonfinite_mismatch:
            return math.inf
        excess = self.max_abs - tol.atol
        if excess <= 0:
            return 0.0
        return excess / self.scale if self.scale > 0 else math.inf

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def summarize(a: np.ndarray) -> Summary:
    a = np.asarray(a)
    finite_mask = np.isfinite(a) if a.dtype.kind in "fc" else np.ones(a.shape, bool)
    vals = a[finite_mask].astype(np.float64)
    nonfinite = int(a.size - vals.size)
    if vals.size == 0:
        nan = math.nan
        return Summary(tuple(a.shape), str(a.dtype), nan, nan, nan, nan, nan, nonfinite)
    return Summary(tuple(a.shape), str(a.dtype), float(vals.min()), float(vals.max()),
                   float(vals.mean()), float(vals.std()), math.sqrt(_dot64(vals, vals)), nonfinite)


def tensor_metrics(a: np.ndarray, b: np.ndarray) -> TensorMetrics:
    """Compare two arrays elementwise. See :class:`TensorMetrics`."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        nan = math.nan
        return TensorMetrics(nan, nan, nan, nan, _nonfinite(a), _nonfinite(b), 0, same_shape=False)
    nf_a, nf_b = _nonfinite(a), _nonfinite(b)
    if a.dtype == b.dtype and a.tobytes() == b.tobytes():
        # Bitwise equal (the common case for a setup against itself): nothing left to difference.
        finite = a[np.isfinite(a)] if nf_a else a
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        return TensorMetrics(0.0, 0.0, 1.0, scale, nf_a, nf_b, 0, bitwise_equal=True, finite_pairs=int(finite.size),
                             size=int(a.size))
    # Elementwise work in the inputs' own float width (float32 for float16/32 pairs: the
    # difference of two float32 values is exact or within one rounding); dot products
    # accumulate in float64.
    work = np.result_type(a.dtype, b.dtype, np.float32)
    x, y = a.astype(work, copy=False).ravel(), b.astype(work, copy=False).ravel()
    mismatch = 0
    if nf_a or nf_b:
        fa, fb = np.isfinite(x), np.isfinite(y)
        both = fa & fb
        # Same non-finite value on both sides counts as agreement (NaN==NaN, inf==inf).
        same_special = ~fa & ~fb & ((np.isnan(x) & np.isnan(y)) | (x == y))
        mismatch = int(np.count_nonzero(~both & ~same_special))
        x, y = x[both], y[both]
    if x.size == 0:
        if mismatch:  # nothing finite on both sides to difference: no number stands for "how far apart"
            return TensorMetrics(math.nan, math.nan, None, 0.0, nf_a, nf_b, mismatch, size=int(a.size))
        return TensorMetrics(0.0, 0.0, 1.0, 0.0, nf_a, nf_b, mismatch, size=int(a.size))
    diff = np.abs(x - y)
    mag = np.maximum(np.abs(x), np.abs(y))
    rel = np.divide(diff, mag, out=np.zeros_like(diff), where=mag > 0)
    nx, ny = math.sqrt(_dot64(x, x)), math.sqrt(_dot64(y, y))
    if nx == 0 and ny == 0:
        cosine = 1.0
    elif nx == 0 or ny == 0:
        cosine = 0.0
    else:
        cosine = float(np.clip(_dot64(x, y) / (nx * ny), -1.0, 1.0))
    return TensorMetrics(max_abs=float(diff.max()), max_rel=float(rel.max()), cosine=cosine, scale=float(mag.max()),
                         nonfinite_a=nf_a, nonfinite_b=nf_b, nonfinite_mismatch=mismatch, finite_pairs=int(x.size),
                         size=int(a.size))


def screen_metrics(a: np.ndarray, b: np.ndarray) -> TensorMetrics:
    """What the tolerance rule needs, in a few vectorised passes: ``max_abs``, ``scale``,
    non-finite counts and bitwise equality, without ``max_rel`` and ``cosine`` (None).

    Every compared pair of every step pays this, so it avoids the full metrics' temporaries:
    ``scale = max(-min A, max A, -min B, max B)`` comes from four reductions (which also
    propagate NaN, so one finite check of the four covers every element) and
    ``max_abs = max|A - B|`` from one subtraction. Equal values (``max_abs == 0``) give
    ``max_rel = 0`` and ``cosine = 1`` for free. Pairs of other dtypes, of mixed dtypes,
    empty, or with NaN/Inf go to :func:`tensor_metrics` (its rules for non-finite values)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype or a.dtype not in _SCREENED or a.size == 0:
        return tensor_metrics(a, b)
    a, b = a.reshape(-1), b.reshape(-1)  # 0-d arrays too: ufuncs on them return scalars, not arrays
    lo_a, hi_a, lo_b, hi_b = a.min(), a.max(), b.min(), b.max()
    if not np.isfinite([lo_a, hi_a, lo_b, hi_b]).all():  # NaN or Inf somewhere: count them
        return tensor_metrics(a, b)
    with np.errstate(over="ignore"):  # an overflowing A - B is an inf max_abs: a divergence
        diff = np.subtract(a, b, out=scratch("screen", a.dtype, a.shape))
    max_abs = float(max(diff.max(), -diff.min()))  # max|A - B| without writing |A - B|
    scale = float(max(-lo_a, hi_a, -lo_b, hi_b))
    if max_abs == 0:  # same values; bitwise only if the bytes agree too (-0.0 == 0.0)
        same_bits = np.array_equal(a.view(_BITS[a.dtype.itemsize]), b.view(_BITS[a.dtype.itemsize]))
        return TensorMetrics(0.0, 0.0, 1.0, scale, 0, 0, 0, bitwise_equal=same_bits, finite_pairs=a.size, size=a.size)
    return TensorMetrics(max_abs, None, None, scale, 0, 0, 0, finite_pairs=a.size, size=a.size)


_SCREENED = (np.dtype(np.float32), np.dtype(np.float64))

_BITS = {4: np.uint32, 8: np.uint64}


class _Scratch(threading.local):
    buffers: dict[tuple[str, np.dtype], np.ndarray]

    def __init__(self) -> None:
        self.buffers = {}


_scratch = _Scratch()


def scratch(slot: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A reusable array of ``shape`` and ``dtype`` for an intermediate result (``slot``
    names its use; one buffer per slot, dtype and thread, as large as the largest asked
    for). Every step compares every pair, and a fresh multi-megabyte temporary is
    page-faulted in anew (``perf``, case-1 model, 500 steps: page faults were about a
    tenth of the coordinator's time). What is written there is valid until the slot's
    next use. The buffers stay for the thread's life: three per dtype, each the size of
    the largest tensor compared (those of one step were all alive at once before)."""
    n = math.prod(shape)
    key = (slot, np.dtype(dtype))
    buffer = _scratch.buffers.get(key)
    if buffer is None or buffer.size < n:
        buffer = _scratch.buffers[key] = np.empty(n, key[1])
    return buffer[:n].reshape(shape)


def _dot64(x: np.ndarray, y: np.ndarray) -> float:
    """Dot product accumulated in float64 without a float64 copy of the inputs."""
    return float(np.einsum("i,i->", x, y, dtype=np.float64))


def _nonfinite(a: np.ndarray) -> int:
    return int(np.count_nonzero(~np.isfinite(a))) if a.dtype.kind in "fc" else 0
