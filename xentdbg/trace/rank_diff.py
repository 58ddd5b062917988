"""What ``xentdbg diff`` says when one or both traces are rank files (:mod:`xentdbg.trace.ranks`).

Pure functions on the rank metadata and the compared steps: :func:`relate` tells how two
traces' replicas relate (two ranks of one run, a rank against a whole batch, ...),
:func:`weights_agreement` reads the compared steps' weights (synchronized across the
replicas of a run), :func:`rank_finding` states what differs by design and what does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from xentdbg.compare.divergence import StepComparison
from xentdbg.findings import Finding
from xentdbg.trace.ranks import RankMeta


class Relation(StrEnum):
    """How two traces' replicas relate."""

    NONE = "none"  # neither is a rank file
    SAME_RUN = "same-run"  # two ranks of one run: different slices of every global batch
    SAME_RANK = "same-rank"  # the same rank of one run (two copies of one file)
    SAME_SLOT = "same-slot"  # the same rank of the same world size, of two runs: the same slice, if the data agree
    OTHER_SLOTS = "other-slots"  # ranks of two runs that take other slices
    RANK_VS_REDUCED = "rank-vs-reduced"  # a rank against its own run's reduced trace
    RANK_VS_WHOLE = "rank-vs-whole"  # a rank against a trace of whole batches (one device, another run)


BY_DESIGN = frozenset({Relation.SAME_RUN, Relation.OTHER_SLOTS, Relation.RANK_VS_REDUCED, Relation.RANK_VS_WHOLE})
"""Relations whose inputs differ by design: each side trained on other samples."""


@dataclass(frozen=True)
class RankPair:
    """The two traces' rank metadata (None: not a rank file) and how they relate.
    ``samples``: the samples each side's first compared step trained on (None: unknown)."""

    a: RankMeta | None
    b: RankMeta | None
    relation: Relation
    samples: tuple[int | None, int | None] = (None, None)

    @property
    def by_design(self) -> bool:
        """The inputs differ by design (the ranks trained on other samples): not a bug."""
        return self.relation in BY_DESIGN

    def label(self, side: str) -> str:
        """``rank 0 of 4 of a MirroredStrategy run`` for a rank file; ``""`` otherwise."""
        meta = self.a if side == "A" else self.b
        return "" if meta is None else f"{meta.describe()} of a {meta.strategy} run"

    def to_dict(self) -> dict:
        def side(meta: RankMeta | None) -> dict | None:
            return None if meta is None else meta.to_dict()

        return {"relation": self.relation.value, "a": side(self.a), "b": side(self.b),
                "by_design": self.by_design, "samples": list(self.samples)}


def relate(a: RankMeta | None, b: RankMeta | None, reduced: bool = False,
           samples: tuple[int | None, int | None] = (None, None)) -> RankPair:
    """How trace A's replicas relate to trace B's. ``reduced``: the one rank file names the
    other trace as its run's reduced trace (the same file on disk)."""
    if a is None and b is None:
        relation = Relation.NONE
    elif a is None or b is None:
        relation = Relation.RANK_VS_REDUCED if reduced else Relation.RANK_VS_WHOLE
    elif a.run == b.run:
        relation = Relation.SAME_RANK if a.rank == b.rank else Relation.SAME_RUN
    elif a.rank == b.rank and a.world_size == b.world_size:
        relation = Relation.SAME_SLOT
    else:
        relation = Relation.OTHER_SLOTS
    return RankPair(a, b, relation, samples)


@dataclass(frozen=True)
class WeightsAgreement:
    """The weights of the compared steps: ``steps`` that held weights on both sides,
    ``bitwise`` of them bitwise equal, ``first_apart`` the first step with a weight
    outside the tolerance (None: none) and ``tensor`` its name."""

    steps: int
    bitwise: int
    first_apart: int | None = None
    tensor: str = ""

    def describe(self) -> str:
        if not self.steps:
            return "no step holds the weights on both sides (--only left them out)"
        if self.first_apart is not None:
            return f"the weights differ from step {self.first_apart} on ({self.tensor} first)"
        if self.bitwise == self.steps:
            return f"the weights are bitwise equal at every one of the {self.steps} compared steps"
        return (f"the weights agree within the tolerance at every one of the {self.steps} compared steps "
                f"({self.bitwise} bitwise equal)")


def weights_agreement(steps: Sequence[StepComparison]) -> WeightsAgreement:
    """Read the ``weights`` phase of every compared step."""
    held = bitwise = 0
    first: int | None = None
    tensor = ""
    for s in steps:
        weights = [t for t in s.tensors if t.phase == "weights"]
        if not weights:
            continue
        held += 1
        bitwise += all(t.metrics is not None and t.metrics.bitwise_equal for t in weights)
        apart = next((t for t in weights if not t.ok), None)
        if apart is not None and first is None:
            first, tensor = s.step, apart.name_a
    return WeightsAgreement(held, bitwise, first, tensor)


def _samples(pair: RankPair) -> str:
    a, b = pair.samples
    return f" ({a} and {b} samples per step)" if a is not None and b is not None else ""


def rank_notes(pair: RankPair) -> list[str]:
    """One line per side that is a rank file, and what the pair is."""
    notes = []
    for side, meta in (("A", pair.a), ("B", pair.b)):
        if meta is not None:
            notes.append(f"trace {side} is a rank file: {meta.describe()} of a {meta.strategy} run (run {meta.run}, "
                         f"written by process {meta.process} of {meta.processes}; reduced trace {meta.reduced})")
    if pair.relation is Relation.SAME_RUN:
        notes.append(f"A and B are two ranks of one run: they trained on different slices of each global batch"
                     f"{_samples(pair)}, so their inputs differ by design; see the diagnosis")
    elif pair.relation is Relation.SAME_RANK:
        notes.append("A and B are the same rank of one run")
    elif pair.relation is Relation.SAME_SLOT:
        notes.append("A and B are the same rank of two runs of the same size: each trained on the same slice of "
                     "each global batch when the runs' data and batch agree")
    elif pair.relation is Relation.OTHER_SLOTS:
        notes.append(f"A and B are ranks of two runs that train on other slices of each global batch"
                     f"{_samples(pair)}: their inputs differ by design")
    elif pair.by_design:
        notes.append(f"one side is one replica's share of each global batch, the other the whole batch"
                     f"{_samples(pair)}: their inputs differ by design")
    return notes


def rank_finding(pair: RankPair, weights: WeightsAgreement) -> Finding:
    """The diagnosis of a pair whose inputs differ by design (:attr:`RankPair.by_design`),
    in place of the probes (whose data-order findings would call it a bug): what the
    ranks trained on, the weights, which every rank of a run holds synchronized, and
    what to diff instead."""
    numbers = {"relation": pair.relation.value, **pair.to_dict(), "weights_steps": weights.steps,
               "weights_bitwise_steps": weights.bitwise, "weights_first_apart": weights.first_apart}
    evidence = [line for side, meta in (("A", pair.a), ("B", pair.b)) if meta is not None
                for line in [f"{side} is {meta.describe()} of run {meta.run} ({meta.strategy})"]]
    if pair.relation is Relation.SAME_RUN:
        assert pair.a is not None and pair.b is not None
        evidence.append(f"each rank trains on its own slice of every global batch{_samples(pair)}: inputs, layer "
                        "outputs, local loss, local gradients and BatchNorm statistics differ by design")
        evidence.append(weights.describe() + " (every replica of a run holds the same synchronized weights)")
        if weights.first_apart is not None:
            return Finding("ranks-out-of-sync", f"Ranks {pair.a.rank} and {pair.b.rank} of one run hold different "
                           f"weights: the replicas are out of sync", tuple(evidence),
                           fix="Every replica must apply the same all-reduced update: look for a variable created "
                               "outside strategy.scope(), an update applied per replica without the reduction, or "
                               "a replica-local random op that changes the weights.", numbers=numbers)
        return Finding("ranks-of-one-run", f"Ranks {pair.a.rank} and {pair.b.rank} of one run: their inputs differ "
                       "by design (different slices of each global batch), not a bug", tuple(evidence),
                       fix=f"Nothing to fix in the inputs. To check the reduction, diff a rank against the run's "
                           f"reduced trace ({pair.a.reduced}), or a setup against another with xentdbg compare.",
                       numbers=numbers)
    meta = pair.a if pair.a is not None else pair.b
    assert meta is not None
    if pair.relation is Relation.RANK_VS_REDUCED:
        evidence.append(f"the other trace is this run's reduced trace: the whole global batch{_samples(pair)}, "
                        "the loss returned and the gradients summed over the replicas")
        evidence.append(weights.describe())
        return Finding("rank-vs-reduced", f"A rank against its run's reduced trace: {meta.describe()} holds one "
                       "replica's share of each step, by design", tuple(evidence),
                       fix="Nothing to fix: the reduced gradients are the sum of the ranks' local gradients. "
                           "Diff two ranks of the run to see how their shares differ.", numbers=numbers)
    if pair.relation is Relation.OTHER_SLOTS:
        evidence.append(f"the two ranks train on other slices of each global batch{_samples(pair)}: inputs, layer "
                        "outputs, loss and gradients cover other samples by design")
    else:
        evidence.append(f"{meta.describe()} covers one replica's slice of each global batch, the other trace the "
                        f"whole batch{_samples(pair)}: inputs, layer outputs, loss and gradients cover other samples "
                        "by design (a rank's local gradients summed over the ranks are its run's reduced gradients)")
    evidence.append(weights.describe())
    return Finding(pair.relation.value, f"{meta.describe().capitalize()} trained on one replica's share of each "
                   "global batch: the inputs differ by design", tuple(evidence),
                   fix=f"Diff the run's reduced trace ({meta.reduced}) against the other trace to compare whole "
                       "steps; the weights (the same in every rank) compare as they are.", numbers=numbers)
