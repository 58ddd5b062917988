"""Introduced or inherited: the verdict of a cross-feed. Pure, no I/O.

A step whose recorded tensors differ beyond tolerance either *introduced* the
difference (the two sides compute differently) or *inherited* it (both compute the
same, from weights that drifted apart by earlier float32 rounding). The records alone
cannot tell, so the step is re-run on each side from the other side's pre-step values
(:meth:`xentdbg.adapters.base.Adapter.evaluate`):

- **view A**: A's record against B re-run from A's weights, state and gradients;
- **view B**: A re-run from B's weights, state and gradients against B's record.

In each view both sides start from the same values and apply their optimizer to the
same gradients, so what still differs was introduced by this step. The step
**inherited** its difference when neither view has a decisive divergence and every
phase flagged in the records was re-run. Otherwise it **introduced** one: the first
divergence of view A (else view B) is reported and diagnosed, on same-weights numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from xentdbg.compare.divergence import CrossFeed, StepComparison

__all__ = ["CROSS_FED_PHASES", "CrossFeed", "Drift", "drift_of", "judge"]

CROSS_FED_PHASES = ("loss", "gradients", "state", "updates", "weights")
"""What a cross-feed re-runs. Inputs and training flags are facts of the step, not
computed from the weights: a difference there is introduced, never inherited."""


def judge(recorded: StepComparison, view_a: StepComparison | None, view_b: StepComparison | None,
          covered: set[str], unavailable: str | None = None) -> CrossFeed:
    """The cross-feed verdict of ``recorded`` (a step with a flagged tensor), given both
    views (None when no probe ran, with ``unavailable`` saying why) and the phases both
    probes re-ran (``covered``; ``updates`` counts as re-run when ``weights`` was)."""
    flagged = recorded.flagged
    assert flagged is not None, "judge() is for flagged steps"
    if "weights" in covered:
        covered = covered | {"updates"}
    phases = {t.phase for t in recorded.tensors if not t.ok and t.phase in CROSS_FED_PHASES}
    uncovered = sorted(phases - covered)
    if flagged.phase not in CROSS_FED_PHASES:  # inputs or flags: facts of the step
        return CrossFeed(None, None, [], f"the {flagged.phase} differ, which no re-run can inherit", flagged)
    return CrossFeed(view_a, view_b, uncovered, unavailable, flagged)


@dataclass(frozen=True)
class Drift:
    """Steps flagged in the records whose differences are float32 rounding: inherited
    (the cross-feed: both sides compute the same from the same values) or, in
    ``rounded``, introduced by the step but shown to be rounding by the float64 oracle
    (:mod:`xentdbg.compare.oracle`; ``evidence`` is its account of the first such step).

    ``sizes``: per drift step, the largest ``max|A-B| / max(|A|,|B|)`` of its flagged
    recorded tensors; ``growth``: the factor it grew by from the first to the last drift
    step (1 for a single step)."""

    steps: tuple[int, ...]
    sizes: tuple[float, ...]
    first_label: str
    rounded: tuple[int, ...] = ()
    evidence: str = ""

    @property
    def growth(self) -> float:
        return self.sizes[-1] / self.sizes[0] if self.sizes and self.sizes[0] > 0 else 1.0

    def describe(self) -> str:
        n = len(self.steps)
        span = f"step {self.steps[0]}" if n == 1 else f"{n} steps from step {self.steps[0]} to {self.steps[-1]}"
        text = (f"float32 drift at {span}: first flagged {self.first_label}; largest relative difference "
                f"{self.sizes[0]:.3g} at step {self.steps[0]}" +
                (f", {self.sizes[-1]:.3g} at step {self.steps[-1]} (x{self.growth:.3g})" if n > 1 else "") + ".")
        inherited = n - len(self.rounded)
        if inherited:
            text += (f" {inherited} step{'s' if inherited > 1 else ''} inherited the difference: re-run from the "
                     "other side's weights, each computed the same (cross-feed).")
        if self.rounded:
            shown = ", ".join(map(str, self.rounded[:8])) + (", ..." if len(self.rounded) > 8 else "")
            text += (f" {len(self.rounded)} step{'s' if len(self.rounded) > 1 else ''} ({shown}) introduced a "
                     f"difference that is float32 rounding: {self.evidence}")
        return text + " Rounding is not a bug (exit 0 for drift alone)."

    def to_dict(self) -> dict:
        return {"steps": list(self.steps), "sizes": list(self.sizes), "first": self.first_label,
                "growth": self.growth, "rounded": list(self.rounded), "evidence": self.evidence}


def drift_of(steps: list[StepComparison]) -> Drift | None:
    """The drift among ``steps`` (those whose cross-feed says inherited or rounding), or None."""
    drifting = [s for s in steps if s.drift]
    if not drifting:
        return None
    sizes = []
    for s in drifting:
        rel = [t.metrics.max_abs / t.metrics.scale for t in s.tensors
               if not t.ok and t.metrics is not None and t.metrics.scale > 0]
        sizes.append(max(rel, default=0.0))
    first = drifting[0].flagged
    rounded = [s for s in drifting if s.crossfeed is not None and s.crossfeed.rounding]
    evidence = ""
    if rounded and rounded[0].crossfeed is not None and rounded[0].crossfeed.float64 is not None:
        evidence = f"at step {rounded[0].step}, {rounded[0].crossfeed.float64.describe()}"
    return Drift(tuple(s.step for s in drifting), tuple(sizes), first.label if first else "",
                 tuple(s.step for s in rounded), evidence)
