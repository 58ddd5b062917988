"""The one comparison loop: step-record pairs in, compared steps and the diagnosis of
the first divergence out. A live replay (:mod:`xentdbg.replay.engine`) and a trace diff
(:mod:`xentdbg.trace.diff`) both feed it; neither repeats it. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xentdbg.compare.crossfeed import CrossFeed, Drift, drift_of
from xentdbg.compare.divergence import Pairing, StepComparison, TensorComparison, compare_step, weight_scales
from xentdbg.compare.metrics import Tolerance
from xentdbg.findings import Diagnosis
from xentdbg.records import StepRecord

RecordPair = tuple[StepRecord, StepRecord]
PreviousPair = tuple[StepRecord | None, StepRecord | None]

DiagnoseStep = Callable[[StepComparison, list[StepComparison], RecordPair, PreviousPair], Diagnosis]
"""``diagnose(step, history, records, previous)``: why ``step`` (the first divergent one)
diverged. ``history``: the steps compared before it; ``records``: both sides' records of
the step; ``previous``: both sides' records of the step before (None at the first step)."""

CrossFeedStep = Callable[[StepComparison, RecordPair, PreviousPair], CrossFeed]
"""``crossfeed(step, records, before)``: re-run a flagged step on each side from the other
side's pre-step values and judge it (:mod:`xentdbg.compare.crossfeed`). ``before``: both
sides' records holding the weights before the step (the start records at step 0)."""


@dataclass
class ComparedSteps:
    """What :func:`compare_stream` found. ``notes``: what the first step could not compare
    (e.g. activations whose layers do not pair)."""

    steps: list[StepComparison]
    diagnosis: Diagnosis | None = None
    notes: list[str] = field(default_factory=list)
    stopped: bool = False  # ``stop_at_first`` ended the stream: the producer was not asked for another pair

    @property
    def drift(self) -> Drift | None:
        return drift_of(self.steps)


def compare_stream(pairs: Iterable[RecordPair], pairing: Pairing, tolerance: Tolerance, *,
                   diagnose: DiagnoseStep | None = None, stop_at_first: bool = False,
                   on_step: Callable[[StepComparison], None] | None = None,
                   start: PreviousPair = (None, None), crossfeed: CrossFeedStep | None = None,
                   updates: bool = True) -> ComparedSteps:
    """Compare each pair of step records in order (:func:`~xentdbg.compare.divergence.compare_step`).

    The first step with a divergence is compared in detail (full metrics and summaries of
    its divergent tensors) and handed to ``diagnose``; later steps are screened only,
    since a report details the first divergence. ``stop_at_first`` stops consuming
    ``pairs`` after that step (the light first pass of ``--fingerprint``): the producer
    is not asked for another pair, and :attr:`ComparedSteps.stopped` tells it so.
    ``on_step`` is called with each compared step, after it joined the history.

    ``start``: records holding both sides' initial weights, for step 0's ``updates``
    (``updates=False``: no updates phase). ``crossfeed``: called for each flagged step
    until the first introduced divergence; a step it shows inherited is drift, and the
    scan goes on (:mod:`xentdbg.compare.crossfeed`). Without it, the first flagged step
    is the divergence."""
    steps: list[StepComparison] = []
    diagnosis: Diagnosis | None = None
    previous: PreviousPair = (None, None)
    diverged = False
    stopped = False
    notes: list[str] = []
    for ra, rb in pairs:
        before = previous if previous[0] is not None else start
        scales = weight_scales(steps[-1]) if steps and previous[0] is not None else None
        cmp = compare_step(ra, rb, pairing, tolerance, detail=not diverged, before=before, updates=updates,
                           before_scales=scales)
        if cmp.flagged is not None and not diverged and crossfeed is not None:
            cmp.crossfeed = crossfeed(cmp, (ra, rb), before)
        inside = cmp.first_activation
        if cmp.first is None and inside is not None and not diverged and not notes and not cmp.drift:
            notes.append(_inside_only(inside))
        if cmp.first is not None and not diverged and diagnose is not None:
            diagnosis = diagnose(cmp, steps, (ra, rb), previous)
        diverged = diverged or cmp.first is not None
        previous = (ra, rb)
        steps.append(cmp)
        if on_step:
            on_step(cmp)
        if stop_at_first and diverged:
            stopped = True
            break
    notes = (list(steps[0].skipped) if steps else []) + notes
    return ComparedSteps(steps, diagnosis, notes, stopped)


def _inside_only(t: TensorComparison) -> str:
    m = t.metrics
    size = f" (max abs diff {m.max_abs:.3g}, cosine {m.cosine:.6f})" if m and m.cosine is not None else ""
    return (f"layer outputs differ from step {t.step} on, first {t.name_a}{size}, while the training flags, loss, "
            "gradients, state and weights agree: the models compute differently inside and train the same "
            "(not a divergence)")
