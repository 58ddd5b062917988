"""The float64 oracle: is a small difference a step introduced float32 rounding? Pure, no I/O.

The cross-feed (:mod:`xentdbg.compare.crossfeed`) shows a step *introduced* a difference
when, from the same weights, state and batch, the two sides still compute different
numbers. Two float32 programs computing the same function in a different order (XLA
against TensorFlow kernels, autodiff of ``log_sigmoid`` against ``sigmoid(z) - y``) do
that too, by rounding; where a step cancels (a confident sigmoid: ``sigmoid(z) - y`` for
``z >> 0``), the rounding grows to percent of a gradient. Re-running the step in float64
on both sides, from the same values and the same batch, tells the two apart:

- same function: each side's rounding error shrinks from ``κ·eps32`` to ``κ·eps64``
  (``κ`` the step's amplification, whatever it is), so the gap between the sides shrinks
  by about ``eps64 / eps32 = 2**-29 ≈ 1.9e-9``;
- different functions (label smoothing, an epsilon clip, a missing term): the float64
  gap is the functions' difference, about as large as the float32 gap.

For every decisive tensor ``T`` the deciding view flags (loss, gradients, state), with
``g32 = max|A32 - B32|``, ``g64 = max|A64 - B64|`` and each side's float32 error
``e_X = max|X32 - X64|``, the rule is

    rounding  ⇔  for every T:  g64 <= RHO * g32   and   e_A, e_B <= ERR * g32 + ulp32(scale)

``RHO = 1e-4`` sits five orders of magnitude above the rounding ratio and four below a
real difference's ratio of about 1. The second condition is the issue's "each float32
side sits within its float32 error": each side's float32 result lies within a few gaps
of the exact one (``ERR = 4``), so the gap is what separates each side from the truth,
not the visible part of a larger error both share. When the float64 results differ, the
difference is real whatever its size.

A tensor that cancels is the exception to the second condition: when its exact value
is at most ``CANCELLED`` of the largest tensor of its phase (``S``), each float32 side
is the rounding left by the terms that cancel in it, and both sides share the part that
comes from the computation before it, so the gap can be smaller than either error. Its
budget is then ``CANCELLED * S`` (the bias of a layer that BatchNorm follows: exactly
zero, float32 gives a few 1e-4 of the step's largest gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from xentdbg.compare.params import as_shape
from xentdbg.records import StepRecord

RHO = 1e-4
"""Largest ``g64 / g32`` that rounding explains (rounding gives about ``2**-29``)."""
ERR = 4.0
"""A side's float32 error may reach ``ERR`` gaps (plus an ulp of the tensor's scale)."""
ORACLE_PHASES = ("loss", "gradients", "state")
"""What the oracle can settle: computed from the weights and the batch, no optimizer
history (an update needs the optimizer's moments and step count, which a float64 re-run
from scratch does not have)."""
F32_EPS = float(np.finfo(np.float32).eps)
CANCELLED = 1e-3
"""A tensor whose exact value is at most this fraction of its phase's largest tensor
cancels: see the module docstring."""


@dataclass(frozen=True)
class TensorCheck:
    """One flagged tensor re-run in float64: the gaps and each side's float32 error."""

    phase: str
    name: str
    g32: float
    g64: float
    err_a: float
    err_b: float
    scale: float
    exact: float = math.inf  # max|X64| over both float64 re-runs
    phase_scale: float = 0.0  # the largest float32 scale of this phase in the step

    @property
    def cancels(self) -> bool:
        """The exact value is at most :data:`CANCELLED` of its phase's largest tensor."""
        return self.exact <= CANCELLED * self.phase_scale

    @property
    def ratio(self) -> float:
        return self.g64 / self.g32 if self.g32 > 0 else math.inf

    @property
    def same_function(self) -> bool:
        return self.g64 <= RHO * self.g32

    @property
    def within_error(self) -> bool:
        budget = ERR * self.g32 + F32_EPS * self.scale
        if self.cancels:
            budget = max(budget, CANCELLED * self.phase_scale)
        return self.err_a <= budget and self.err_b <= budget

    @property
    def rounding(self) -> bool:
        return self.same_function and self.within_error

    @property
    def less_precise(self) -> str | None:
        """The side whose float32 error is over 100 times the other's (floored at an ulp
        of the scale): its formula loses precision here, by cancellation, say."""
        floor = F32_EPS * self.scale
        for side, mine, other in (("A", self.err_a, self.err_b), ("B", self.err_b, self.err_a)):
            if mine > 100 * max(other, floor):
                return side
        return None

    def describe(self) -> str:
        text = (f"{self.phase} {self.name}: float32 gap {self.g32:.3g}, float64 gap {self.g64:.3g} "
                f"(x{self.ratio:.2g}); float32 error A {self.err_a:.3g}, B {self.err_b:.3g}")
        side = self.less_precise
        if self.cancels:
            text += (f"; it cancels (exact values at most {self.exact:.2g}, the phase's largest tensor "
                     f"{self.phase_scale:.2g})")
        return text + (f" (side {side}'s float32 formula loses precision here)" if side else "")

    def to_dict(self) -> dict:
        return {"phase": self.phase, "name": self.name, "g32": self.g32, "g64": self.g64, "ratio": self.ratio,
                "err_a": self.err_a, "err_b": self.err_b, "scale": self.scale, "exact": self.exact,
                "phase_scale": self.phase_scale, "cancels": self.cancels, "rounding": self.rounding,
                "less_precise": self.less_precise}


@dataclass
class Float64Check:
    """The oracle's verdict on one step. ``unavailable``: why it did not run (then
    ``checks`` is empty and the cross-feed's verdict stands). ``start``: whose pre-step
    values both float64 re-runs started from (``"A"`` or ``"B"``)."""

    checks: list[TensorCheck] = field(default_factory=list)
    unavailable: str | None = None
    start: str = ""

    @property
    def ran(self) -> bool:
        return bool(self.checks) and self.unavailable is None

    @property
    def rounding(self) -> bool:
        """Every flagged tensor is float32 rounding: the step introduced no real difference."""
        return self.ran and all(c.rounding for c in self.checks)

    @property
    def deciding(self) -> TensorCheck | None:
        """The first tensor rounding does not explain (None when all are rounding)."""
        return next((c for c in self.checks if not c.rounding), None)

    def describe(self) -> str:
        if not self.ran:
            return f"float64 oracle not run: {self.unavailable}"
        where = f"both sides re-run in float64 from {self.start}'s pre-step values"
        bad = self.deciding
        if bad is None:
            worst = max(self.checks, key=lambda c: c.ratio)
            return (f"float64 oracle ({where}): float32 rounding. The float64 results agree (largest gap ratio "
                    f"{worst.ratio:.2g}, rounding gives ~2e-9) and each float32 side lies within its float32 "
                    f"error of them; " + "; ".join(c.describe() for c in self.checks) + ".")
        why = ("the float64 results differ too" if not bad.same_function
               else "the float64 results agree, but a side's float32 error is several times the gap")
        return f"float64 oracle ({where}): a real difference, {why}: {bad.describe()}."

    def to_dict(self) -> dict:
        return {"ran": self.ran, "rounding": self.rounding, "start": self.start, "unavailable": self.unavailable,
                "rho": RHO, "err": ERR, "checks": [c.to_dict() for c in self.checks]}


def _lookup(record: StepRecord, phase: str, name: str) -> np.ndarray | None:
    return next((a for n, a in record.tensors.get(phase, []) if n == name), None)


def check_float64(flagged: list[tuple[str, str, str]], a32: StepRecord, b32: StepRecord,
                  a64: StepRecord, b64: StepRecord, start: str) -> Float64Check:
    """The verdict on ``flagged`` (``(phase, name_a, name_b)`` of each decisive tensor the
    deciding view flags) from that view's float32 records and both sides' float64 re-runs
    from the same values. A tensor missing from a re-run, not float64 there, or
    non-finite makes the oracle unavailable: it never guesses."""
    checks = []
    phase_scales = {phase: max((float(np.max(np.abs(np.asarray(x, np.float64)), initial=0.0))
                                for record in (a32, b32) for _, x in record.tensors.get(phase, [])
                                if np.size(x) and np.all(np.isfinite(x))), default=0.0)
                    for phase in ORACLE_PHASES}
    for phase, name_a, name_b in flagged:
        if phase not in ORACLE_PHASES:
            return Float64Check(unavailable=f"the step differs in {phase}, which a float64 re-run cannot "
                                            "reproduce", start=start)
        arrays = [_lookup(a32, phase, name_a), _lookup(b32, phase, name_b),
                  _lookup(a64, phase, name_a), _lookup(b64, phase, name_b)]
        if any(x is None for x in arrays):
            return Float64Check(unavailable=f"{phase} {name_a} is missing from a re-run", start=start)
        x32a, x32b, x64a, x64b = (np.asarray(x) for x in arrays)
        x32b, x64b = as_shape(x32b, x32a.shape), as_shape(x64b, x32a.shape)  # paired up to size-1 axes
        for side, x in (("A", x64a), ("B", x64b)):
            if x.dtype != np.float64:
                return Float64Check(unavailable=f"side {side} computed {phase} {name_a} in {x.dtype} with float64 "
                                                "enabled (the setup fixes its dtype)", start=start)
        if not (x32a.shape == x32b.shape == x64a.shape == x64b.shape):
            return Float64Check(unavailable=f"{phase} {name_a}: shapes differ", start=start)
        if not all(np.isfinite(x).all() for x in (x32a, x32b, x64a, x64b)):
            return Float64Check(unavailable=f"{phase} {name_a} is not finite", start=start)
        f32a, f32b = x32a.astype(np.float64), x32b.astype(np.float64)
        checks.append(TensorCheck(
            phase, name_a if name_a == name_b else f"{name_a} | {name_b}",
            g32=float(np.max(np.abs(f32a - f32b), initial=0.0)),
            g64=float(np.max(np.abs(x64a - x64b), initial=0.0)),
            err_a=float(np.max(np.abs(f32a - x64a), initial=0.0)),
            err_b=float(np.max(np.abs(f32b - x64b), initial=0.0)),
            scale=float(max(np.max(np.abs(f32a), initial=0.0), np.max(np.abs(f32b), initial=0.0))),
            exact=float(max(np.max(np.abs(x64a), initial=0.0), np.max(np.abs(x64b), initial=0.0))),
            phase_scale=phase_scales[phase]))
    if not checks:
        return Float64Check(unavailable="no flagged tensor to re-run", start=start)
    return Float64Check(checks, start=start)
