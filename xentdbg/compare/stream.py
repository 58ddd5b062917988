"""The one comparison loop: step-record pairs in, compared steps and the diagnosis of
the first divergence out. A live replay (:mod:`xentdbg.replay.engine`) and a trace diff
(:mod:`xentdbg.trace.diff`) both feed it; neither repeats it. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xentdbg.compare.divergence import Pairing, StepComparison, TensorComparison, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.findings import Diagnosis
from xentdbg.records import StepRecord

RecordPair = tuple[StepRecord, StepRecord]
PreviousPair = tuple[StepRecord | None, StepRecord | None]

DiagnoseStep = Callable[[StepComparison, list[StepComparison], RecordPair, PreviousPair], Diagnosis]
"""``diagnose(step, history, records, previous)``: why ``step`` (the first divergent one)
diverged. ``history``: the steps compared before it; ``records``: both sides' records of
the step; ``previous``: both sides' records of the step before (None at the first step)."""


@dataclass
class ComparedSteps:
    """What :func:`compare_stream` found. ``notes``: what the first step could not compare
    (e.g. activations whose layers do not pair)."""

    steps: list[StepComparison]
    diagnosis: Diagnosis | None = None
    notes: list[str] = field(default_factory=list)
    stopped: bool = False  # ``stop_at_first`` ended the stream: the producer was not asked for another pair


def compare_stream(pairs: Iterable[RecordPair], pairing: Pairing, tolerance: Tolerance, *,
                   diagnose: DiagnoseStep | None = None, stop_at_first: bool = False,
                   on_step: Callable[[StepComparison], None] | None = None) -> ComparedSteps:
    """Compare each pair of step records in order (:func:`~xentdbg.compare.divergence.compare_step`).

    The first step with a divergence is compared in detail (full metrics and summaries of
    its divergent tensors) and handed to ``diagnose``; later steps are screened only,
    since a report details the first divergence. ``stop_at_first`` stops consuming
    ``pairs`` after that step (the light first pass of ``--fingerprint``): the producer
    is not asked for another pair, and :attr:`ComparedSteps.stopped` tells it so.
    ``on_step`` is called with each compared step, after it joined the history."""
    steps: list[StepComparison] = []
    diagnosis: Diagnosis | None = None
    previous: PreviousPair = (None, None)
    diverged = False
    stopped = False
    notes: list[str] = []
    for ra, rb in pairs:
        cmp = compare_step(ra, rb, pairing, tolerance, detail=not diverged)
        inside = cmp.first_activation
        if cmp.first is None and inside is not None and not diverged and not notes:
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
