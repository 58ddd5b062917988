"""``xentdbg diff``: the compare analysis on two recorded traces, streamed tensor by tensor."""

from __future__ import annotations

from typing import Callable

from xentdbg.compare.divergence import Pairing, StepComparison, compare_step
from xentdbg.compare.matching import match_by_order
from xentdbg.compare.metrics import Tolerance
from xentdbg.data import DataSpec
from xentdbg.errors import ParameterMismatch
from xentdbg.replay.engine import CompareConfig, CompareResult, runtime_versions
from xentdbg.trace.reader import load_trace


def diff_traces(path_a: str, path_b: str, tolerance: Tolerance = Tolerance(),
                on_step: Callable[[StepComparison], None] | None = None) -> CompareResult:
    """Compare the steps two traces have in common. Holds one tensor pair in memory at a time."""
    with load_trace(path_a) as a, load_trace(path_b) as b:
        params = match_by_order(a.info.params, b.info.params)
        if not params.ok:
            raise ParameterMismatch("The two traces' parameters cannot be paired by order and shape.",
                                    table_a=a.info.params, table_b=b.info.params, problems=params.problems)
        state = match_by_order(a.info.state, b.info.state)
        notes = []
        if not state.ok and (a.info.state or b.info.state):
            notes.append("non-trainable state not compared: " + "; ".join(state.problems))
        if a.meta.get("data") != b.meta.get("data"):
            notes.append(f"the traces were recorded on different data: A {a.meta.get('data')}, B {b.meta.get('data')}")
        common = sorted(set(a.steps) & set(b.steps))
        if len(common) < max(len(a.steps), len(b.steps)):
            notes.append(f"compared the {len(common)} steps both traces hold (A {len(a.steps)}, B {len(b.steps)})")
        pairing = Pairing(params=params.pairs, state=state.pairs)
        steps = []
        diagnosis = None
        diverged = False  # later steps are screened, not detailed (the report details the first)
        for k in common:
            ra, rb = a.record(k), b.record(k)
            cmp = compare_step(ra, rb, pairing, tolerance, detail=not diverged)
            if cmp.first and not diverged:
                diagnosis = _diagnose(a, b, k, cmp, steps, pairing, tolerance)
            diverged = diverged or cmp.first is not None
            steps.append(cmp)
            if on_step:
                on_step(cmp)
        if steps:
            notes.extend(steps[0].skipped)
        config = CompareConfig(
            setup_a=f"{path_a} ({a.meta.get('setup')})", setup_b=f"{path_b} ({b.meta.get('setup')})",
            data=DataSpec.from_dict(a.meta["data"]) if isinstance(a.meta.get("data"), dict) else DataSpec(),
            steps=len(common), init="traces", env_a=a.meta.get("env") or {}, env_b=b.meta.get("env") or {},
            tolerance=tolerance)
        return CompareResult(config, a.info, b.info, steps, notes, runtime_versions(), diagnosis=diagnosis)


def _diagnose(a, b, k: int, cmp: StepComparison, history, pairing: Pairing, tolerance: Tolerance):
    """The probes on the traced step: values loaded for this step and the one before it
    (or the recorded initial values); the dataset when the traces name the same data."""
    from xentdbg.data import load as load_data
    from xentdbg.diagnose.build import diagnose_step
    from xentdbg.errors import UsageError

    loaded = (a.record(k, load=True), b.record(k, load=True))
    previous = tuple(t.record(k - 1, load=True) if k - 1 in t.steps else None for t in (a, b))
    data = None
    if isinstance(a.meta.get("data"), dict) and a.meta.get("data") == b.meta.get("data"):
        try:
            data = load_data(DataSpec.from_dict(a.meta["data"]))
        except (UsageError, KeyError, TypeError, ValueError):
            data = None  # e.g. the user's --data file is not on this machine: probes go without the batch
    starts = (a.initial(), b.initial())
    return diagnose_step(cmp, history, loaded, previous, starts, (a.info, b.info), pairing, tolerance, data)
