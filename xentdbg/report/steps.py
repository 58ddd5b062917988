"""Which steps a report's per-step table shows: the first few, a window around the first
divergence, the last few, and for each run of steps left out a :class:`Gap` that sums
it up. The terminal and Markdown reports show the same rows; the JSON report keeps every
step (it is for scripts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xentdbg.compare.divergence import StepComparison

HEAD = 3
"""Steps shown from the start."""
AROUND = 3
"""Steps shown before and after the step of the first divergence (or first drift)."""
TAIL = 3
"""Steps shown from the end."""
MIN_GAP = 4
"""Fewer steps than this between two shown ones are shown too: a summary row would save little."""


@dataclass(frozen=True)
class Worst:
    """The largest value of a column among left-out steps, and the step it came from."""

    value: float
    step: int


@dataclass(frozen=True)
class Gap:
    """Consecutive steps a table leaves out."""

    steps: Sequence[StepComparison]

    @property
    def first(self) -> int:
        return self.steps[0].step

    @property
    def last(self) -> int:
        return self.steps[-1].step

    @property
    def diverged(self) -> int:
        """How many of these steps have a pair outside tolerance."""
        return sum(1 for s in self.steps if s.divergences)

    @property
    def loss_diff(self) -> Worst:
        return _worst(self.steps, lambda s: abs(s.loss_a - s.loss_b))

    @property
    def grad_diff(self) -> Worst:
        return _worst(self.steps, lambda s: s.max_grad_diff)

    def describe(self) -> str:
        """``4,990 steps, all within tolerance``."""
        n = len(self.steps)
        within = "all" if not self.diverged else "none" if self.diverged == n else f"{n - self.diverged:,}"
        return f"{n:,} steps, {within} within tolerance"


def _worst(steps: Sequence[StepComparison], value) -> Worst:
    """The largest value (a NaN, where one side is non-finite, counts as the largest)."""
    best = Worst(-math.inf, steps[0].step)
    for s in steps:
        v = value(s)
        if math.isnan(v):
            return Worst(v, s.step)
        if v > best.value:
            best = Worst(v, s.step)
    return best


def anchor(steps: Sequence[StepComparison]) -> int | None:
    """The index of the step that introduced the first divergence, else of the first step
    flagged as drift; None when every step agreed."""
    first = next((k for k, s in enumerate(steps) if s.first is not None), None)
    if first is None:
        first = next((k for k, s in enumerate(steps) if s.drift), None)
    return first


def shown_rows(steps: Sequence[StepComparison], all_steps: bool = False) -> list[StepComparison | Gap]:
    """The rows of a per-step table: every step with ``all_steps``; else the first
    :data:`HEAD`, :data:`AROUND` on either side of the :func:`anchor`, the last :data:`TAIL`,
    and a :class:`Gap` for each run of at least :data:`MIN_GAP` steps left out."""
    n = len(steps)
    keep = set(range(n)) if all_steps else set(range(min(HEAD, n))) | set(range(max(0, n - TAIL), n))
    at = anchor(steps)
    if at is not None:
        keep |= set(range(max(0, at - AROUND), min(n, at + AROUND + 1)))
    rows: list[StepComparison | Gap] = []
    k = 0
    while k < n:
        if k in keep:
            rows.append(steps[k])
            k += 1
            continue
        end = k
        while end < n and end not in keep:
            end += 1
        if end - k < MIN_GAP:
            rows.extend(steps[k:end])
        else:
            rows.append(Gap(steps[k:end]))
        k = end
    return rows


def shown_line(rows: Sequence[StepComparison | Gap], total: int) -> str | None:
    """Under a table that leaves steps out: how many it shows and how to see all."""
    shown = sum(1 for r in rows if isinstance(r, StepComparison))
    if shown == total:
        return None
    return (f"{shown} of {total:,} steps shown; --all-steps shows every one, and the --json report "
            "holds them all.")
