"""``xentdbg diff``: the compare analysis on two recorded traces, streamed tensor by tensor."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from xentdbg.compare.divergence import Pairing, StepComparison
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.params import match_parameters
from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.compare.stream import PreviousPair, RecordPair, compare_stream
from xentdbg.data import DataInfo, DataSpec
from xentdbg.errors import ParameterMismatch
from xentdbg.findings import Diagnosis
from xentdbg.trace.rank_diff import RankPair, rank_finding, rank_notes, relate, weights_agreement
from xentdbg.trace.reader import Trace, load_trace
from xentdbg.version import runtime_versions


def diff_traces(path_a: str, path_b: str, tolerance: Tolerance | None = None,
                on_step: Callable[[StepComparison], None] | None = None) -> CompareResult:
    """Compare the steps two traces have in common. Holds one tensor pair in memory at a time.

    Rank files (:mod:`xentdbg.trace.ranks`) are named as such in the sides' labels and the
    notes (:func:`~xentdbg.trace.rank_diff.rank_notes`); when the two sides trained on
    other samples by design (two ranks of one run, a rank against a whole batch), the
    diagnosis says so (:func:`~xentdbg.trace.rank_diff.rank_finding`) in place of the
    probes, whose data-order findings would call it a bug."""
    tolerance = tolerance or Tolerance()
    with load_trace(path_a) as a, load_trace(path_b) as b:
        matched = match_parameters(a.info.params, b.info.params, a.info.state, b.info.state)
        if not matched.ok:
            raise ParameterMismatch("The two traces' parameters cannot be paired by layer, role and shape.",
                                    table_a=a.info.params, table_b=b.info.params, problems=matched.problems)
        notes = list(matched.notes)
        if matched.state_problems:
            notes.append("non-trainable state not compared: " + "; ".join(matched.state_problems))
        if a.meta.get("data") != b.meta.get("data"):
            notes.append(f"the traces were recorded on different data: A {a.meta.get('data')}, B {b.meta.get('data')}")
        common = sorted(set(a.steps) & set(b.steps))
        if len(common) < max(len(a.steps), len(b.steps)):
            notes.append(f"compared the {len(common)} steps both traces hold (A {len(a.steps)}, B {len(b.steps)})")
        pairing = Pairing(params=matched.params, state=matched.state, frozen=matched.frozen)
        ranks = rank_pair(a, b, common)

        def pairs() -> Iterator[RecordPair]:
            for k in common:
                yield a.record(k), b.record(k)

        def diagnose(cmp: StepComparison, history: list[StepComparison], records: RecordPair,
                     previous: PreviousPair) -> Diagnosis:
            return _diagnose(a, b, cmp, history, pairing, tolerance)

        # No live setups to re-run: a flagged step is judged on its recorded values.
        # updates decide only where a re-run can settle them (the verdict rule, README)
        found = compare_stream(pairs(), pairing, tolerance, diagnose=None if ranks.by_design else diagnose,
                               on_step=on_step, updates=False)
        diagnosis = found.diagnosis
        if ranks.by_design and any(s.first is not None for s in found.steps):
            diagnosis = Diagnosis([rank_finding(ranks, weights_agreement(found.steps))])
        notes = rank_notes(ranks) + notes
        if any(s.flagged is not None for s in found.steps):
            notes.append("diff judges steps on their recorded values (no setups to re-run cross-fed): float32 "
                         "drift and a difference a step introduces look alike here; compare re-runs flagged steps.")
        labels = [f"{path} ({', '.join(x for x in (str(t.meta.get('setup')), ranks.label(side)) if x)})"
                  for path, t, side in ((path_a, a, "A"), (path_b, b, "B"))]
        config = CompareConfig(
            setup_a=labels[0], setup_b=labels[1],
            data=DataSpec.from_dict(a.meta["data"]) if isinstance(a.meta.get("data"), dict) else DataSpec(),
            steps=len(common), init="traces", env_a=a.meta.get("env") or {}, env_b=b.meta.get("env") or {},
            tolerance=tolerance)
        recorded = tuple(str(t.meta["command"]) if t.meta.get("command") else None for t in (a, b))
        return CompareResult(config, a.info, b.info, found.steps, notes + found.notes, runtime_versions(),
                             diagnosis=diagnosis, recorded_commands=(recorded[0], recorded[1]))


def rank_pair(a: Trace, b: Trace, common: list[int]) -> RankPair:
    """How the two traces' replicas relate (:func:`~xentdbg.trace.rank_diff.relate`), with
    the samples of each side's first common step (read from the declared shapes)."""
    samples: tuple[int | None, int | None] = (None, None)
    if common:
        def count(t: Trace) -> int | None:
            x = dict(t.record(common[0]).tensors.get("inputs", [])).get("x")
            return len(x) if x is not None and x.ndim == 1 else None

        samples = (count(a), count(b))
    return relate(a.rank, b.rank, _reduced_of(a, b) or _reduced_of(b, a), samples)


def _reduced_of(rank: Trace, other: Trace) -> bool:
    """Whether ``other`` is the file ``rank`` names as its run's reduced trace, written by
    the same run (the same ``created`` and ``command``: not a later trace to the same path)."""
    meta = rank.rank
    if meta is None or other.rank is not None:
        return False
    if any(rank.meta.get(k) != other.meta.get(k) for k in ("created", "command")):
        return False
    path = meta.reduced_path(rank.path)
    try:
        return path.is_file() and os.path.samefile(path, other.path)
    except OSError:
        return False


def _diagnose(a: Trace, b: Trace, cmp: StepComparison, history: list[StepComparison], pairing: Pairing,
              tolerance: Tolerance) -> Diagnosis:
    """The probes on the traced step: values loaded for this step and the one before it
    (or the recorded initial values); the dataset when the traces name the same data."""
    from xentdbg.data import load as load_data
    from xentdbg.diagnose.build import diagnose_step
    from xentdbg.errors import UsageError

    k = cmp.step
    loaded = (a.record(k, load=True), b.record(k, load=True))
    previous = (a.record(k - 1, load=True) if k - 1 in a.steps else None,
                b.record(k - 1, load=True) if k - 1 in b.steps else None)
    data: DataInfo | None = None
    if isinstance(a.meta.get("data"), dict) and a.meta.get("data") == b.meta.get("data"):
        try:
            data = load_data(DataSpec.from_dict(a.meta["data"]))
        except (UsageError, KeyError, TypeError, ValueError):
            data = None  # e.g. the user's --data file is not on this machine: probes go without the batch
    starts = (a.initial(), b.initial())
    return diagnose_step(cmp, history, loaded, previous, starts, (a.info, b.info), pairing, tolerance, data)
