"""What the report says about the data order: steps whose two sides trained on the same
samples in another order (compared aligned), and, at the first divergent step, samples
that differ and what remains once each side is re-run on the other's batch. Plain data
for every renderer."""

from __future__ import annotations

from typing import Any

from xentdbg.compare.alignment import ORDER
from xentdbg.compare.result import CompareResult


def _steps(steps: list[int]) -> str:
    if len(steps) == 1:
        return f"step {steps[0]}"
    if steps == list(range(steps[0], steps[-1] + 1)):
        return f"steps {steps[0]}..{steps[-1]}"
    return "steps " + ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")


def data_order(result: CompareResult) -> dict[str, Any] | None:
    """The data-order account of ``result``, or None when every compared batch agreed.

    Looks at the steps up to the first divergent one (all steps when none diverged).
    ``reordered_steps``: same samples in another order, compared aligned; ``step`` and
    ``kind``: the first step whose batches hold other samples (an inputs divergence);
    ``remaining``: the label of the first divergence left after alignment (None: none,
    or not known, as ``whole_story`` and ``realigned`` say); ``lines``: in words."""
    divergent = next((k for k, s in enumerate(result.steps) if s.first is not None), None)
    steps = result.steps if divergent is None else result.steps[:divergent + 1]
    reordered = [s for s in steps if s.reordered]
    other = next((s for s in steps if s.alignment is not None and not s.reordered), None)
    if not reordered and other is None:
        return None
    fits = [side for side, info in (("A", result.info_a), ("B", result.info_b)) if info.kind == "KerasFit"]
    lines: list[str] = []
    remaining = None
    if reordered:
        first = reordered[0]
        al = first.alignment
        assert al is not None
        lines.append(f"{_steps([s.step for s in reordered])}: {al.describe()}. A mean loss over the batch, and its "
                     "gradients, do not depend on the order (up to float32 summation rounding, which the tolerance "
                     "and the float64 oracle judge): the inputs' per-sample sums and the per-sample layer outputs "
                     "were compared in the aligned order.")
        last = steps[-1]
        if divergent is None:
            lines.append("After alignment nothing else differs: the order alone is not a divergence.")
        elif last.reordered and last.first is not None:
            remaining = last.first.label
            lines.append(f"After alignment the first divergence that remains is {remaining}.")
    whole = realigned = None
    if other is not None and other.alignment is not None:
        lines.append(f"step {other.step}: the two sides trained on other samples ({other.alignment.describe()}).")
        r = other.realigned
        realigned = r.to_dict() if r is not None else None
        if r is not None and r.ran:
            whole = r.whole_story
            if r.first is not None:
                remaining = r.first.label
                lines.append(f"Re-run on each other's batch from the same pre-step weights, the first divergence "
                             f"that remains after alignment is {remaining} ({r.view}).")
            elif r.whole_story:
                lines.append("Re-run on each other's batch from the same pre-step weights, the two sides agree in "
                             f"every decisive tensor: the data order is the whole story at step {other.step}.")
            else:
                lines.append(f"Re-run on each other's batch from the same pre-step weights, the two sides agree, but "
                             f"the probes could not re-run {', '.join(r.uncovered)}: what else differs there is not "
                             "known.")
        elif r is not None:
            lines.append(f"Not re-run on the other side's batch ({r.unavailable}).")
    if fits:
        lines.append(f"model.fit shuffles by default (side {' and '.join(fits)}): pass shuffle=False to compare "
                     "batch by batch.")
    shown = (other if other is not None else reordered[0]).alignment
    return {"reordered_steps": [s.step for s in reordered],
            "step": other.step if other is not None else None,
            "kind": shown.kind if shown is not None else ORDER,
            "alignment": shown.to_dict() if shown is not None else None,
            "remaining": remaining, "whole_story": whole, "realigned": realigned, "lines": lines}
