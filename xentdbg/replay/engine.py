"""Lockstep replay: drive two workers step by step and compare what they capture.

This is the Python API behind ``xentdbg compare``::

    from xentdbg import CompareConfig, compare
    result = compare(CompareConfig("a.py", "b.py:setup", steps=10))
    result.first  # the first divergent tensor, or None
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from xentdbg import __version__
from xentdbg.compare.fingerprint import FULL_BELOW
from xentdbg.compare.divergence import Pairing, StepComparison, TensorComparison, compare_step
from xentdbg.compare.matching import match_by_order
from xentdbg.compare.metrics import Tolerance
from xentdbg.data import DataSpec
from xentdbg.data import load as load_data
from xentdbg.diagnose import Diagnosis
from xentdbg.diagnose.build import diagnose_step
from xentdbg.errors import EXIT_DIVERGED, EXIT_OK, ParameterMismatch
from xentdbg.records import SideInfo, StepRecord
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.process import WorkerProcess, load_timeout, start_worker, wait_ready
from xentdbg.trace.meta import trace_meta
from xentdbg.trace.writer import TraceWriter

Init = Literal["a", "b", "own"]


@dataclass(frozen=True)
class CompareConfig:
    """Everything ``compare`` needs. ``init``: which side's initial weights both start from
    (``"a"``, ``"b"``) or ``"own"`` for each its own."""

    setup_a: str
    setup_b: str
    data: DataSpec = field(default_factory=DataSpec)
    steps: int = 10
    init: Init = "a"
    env_a: dict[str, str] = field(default_factory=dict)
    env_b: dict[str, str] = field(default_factory=dict)
    tolerance: Tolerance = field(default_factory=Tolerance)
    step_timeout: float | None = None
    save_traces: str | None = None  # folder for a.h5 and b.h5
    fingerprint: bool = False  # two passes: light fingerprints first, full capture up to the flagged step
    calibrate: bool = False  # first replay each side against itself and set tolerances from its noise


@dataclass
class CompareResult:
    config: CompareConfig
    info_a: SideInfo
    info_b: SideInfo
    steps: list[StepComparison]
    notes: list[str]
    versions: dict[str, str]
    mode: str = "full"  # "fingerprint": only the light first pass ran (it flagged nothing)
    diagnosis: Diagnosis | None = None  # why the first divergence happened (full capture only)
    calibration: dict | None = None  # --calibrate: measured noise per phase and the tolerances set from it
    first_pass: dict | None = None  # --fingerprint: {"steps": replayed, "flagged": label or None}

    @property
    def first(self) -> TensorComparison | None:
        return next((s.first for s in self.steps if s.first is not None), None)

    @property
    def nonfinite_loss_from(self) -> dict[str, int | None]:
        """First step at which each side's loss is NaN or Inf (None: finite throughout)."""
        def onset(values):
            return next((s.step for s, v in zip(self.steps, values) if not np.isfinite(v)), None)

        return {"A": onset([s.loss_a for s in self.steps]), "B": onset([s.loss_b for s in self.steps])}

    @property
    def exit_code(self) -> int:
        return EXIT_DIVERGED if self.first is not None else EXIT_OK

    @property
    def all_bitwise_equal(self) -> bool:
        if self.mode == "fingerprint":
            return False  # fingerprints cannot show bitwise equality
        return all(t.ok and (t.metrics is None or t.metrics.bitwise_equal) for s in self.steps for t in s.tensors)


def _start(config: CompareConfig, light: bool):
    """Both workers, loading their setups, and the data (for the diagnosis)."""
    refs = [SetupRef.parse(config.setup_a), SetupRef.parse(config.setup_b)]
    for ref in refs:
        ref.check()
    data = load_data(config.data)  # fail fast on bad data options, before starting two frameworks
    return (start_worker("A", refs[0], config.env_a, config.data, config.steps, light),
            start_worker("B", refs[1], config.env_b, config.data, config.steps, light)), data


def _send_init(config: CompareConfig, workers, values, state_ok: bool) -> list[tuple[list, list]]:
    """Send the chosen side's initial weights (and state, when it pairs) to the other side.

    Returns the initial parameters and state each side starts from."""
    src = {"a": 0, "b": 1}.get(config.init)
    starts = []
    for k, w in enumerate(workers):
        if src is None or k == src:
            w.send({"type": "init", "params": False, "state": False})
            starts.append(values[k])
            continue
        params, state = values[src]
        w.send({"type": "init", "params": True, "state": state_ok}, params + (state if state_ok else []))
        starts.append((params, state if state_ok else values[k][1]))
    return starts


def compare(config: CompareConfig, on_step: Callable[[StepComparison], None] | None = None,
            on_status: Callable[[str], None] | None = None,
            on_pass: Callable[[str, int], None] | None = None) -> CompareResult:
    """Replay both setups in lockstep for ``config.steps`` steps and compare every step.

    With ``config.fingerprint`` the first pass captures light records as fingerprints
    (:mod:`xentdbg.compare.fingerprint`) and stops at the first step whose fingerprints
    differ; a second pass replays both setups from the start with full capture up to
    that step. ``on_pass(description, steps)`` announces each pass.

    Raises :class:`~xentdbg.errors.UsageError` (bad setup, mismatched parameters) or
    :class:`~xentdbg.errors.SetupFailed` (a side raised, died or hung)."""
    announce = on_pass or (lambda d, n: None)
    if config.calibrate:
        from xentdbg.replay.calibrate import calibrate

        announce("calibrating", 0)
        cal = calibrate(config, lambda c: _replay(c, False, None, None), on_status)
        announce("replaying", config.steps)
        result = compare(replace(config, calibrate=False, tolerance=cal["tolerance"]), on_step, on_status, on_pass)
        result.config = replace(result.config, calibrate=True)
        noise = {p: v["noise"] for p, v in cal["per_phase"].items()}
        result.calibration = {"noise": cal["noise"], "per_phase": cal["per_phase"], "safety": cal["safety"],
                              "rule": cal["tolerance"].describe()}
        if result.diagnosis is not None:  # let the noise probe use the measured floor
            result.diagnosis = _rediagnose(result, noise)
        return result
    if not config.fingerprint:
        return _replay(config, False, on_step, on_status)
    announce("pass 1: fingerprints", config.steps)
    light = _replay(replace(config, save_traces=None), True, on_step, on_status)
    flagged = light.first
    if flagged is None:
        light.mode = "fingerprint"
        light.first_pass = {"steps": len(light.steps), "flagged": None}
        light.notes.insert(0, f"--fingerprint: nothing differed in {len(light.steps)} steps. Tensors of more than "
                              f"{FULL_BELOW} elements were screened by sum, norm and max|x| (a difference these do not "
                              "show is not seen); activations, and gradients where the step does not return them, "
                              "were not captured.")
        if config.save_traces:
            light.notes.insert(1, "--save-traces: nothing written; with --fingerprint, traces hold the full-capture "
                                  "second pass, which runs only after a difference.")
        return light
    c = flagged.step
    announce(f"pass 2: full capture of steps 0..{c}", c + 1)
    full = _replay(replace(config, steps=c + 1, fingerprint=False), False, on_step, on_status)
    full.config = config
    full.first_pass = {"steps": len(light.steps), "flagged": flagged.label}
    full.notes.insert(0, f"--fingerprint: pass 1 flagged {flagged.label}; pass 2 replayed steps 0..{c} "
                         "with full capture.")
    if full.first is None:
        full.notes.insert(1, f"pass 2 found no divergence in steps 0..{c}: the setups do not replay "
                             "deterministically; run without --fingerprint, or with --calibrate.")
    return full


def _rediagnose(result: CompareResult, noise: dict[str, float]):
    """Re-run the probes with the calibrated noise floor (the context is kept on the diagnosis)."""
    from xentdbg.diagnose import diagnose

    ctx = result.diagnosis.context
    if ctx is None:
        return result.diagnosis
    ctx.noise = noise
    return diagnose(ctx, *result.diagnosis.data_args)


def _replay(config: CompareConfig, light: bool, on_step, on_status, noise: dict | None = None) -> CompareResult:
    """One lockstep replay. ``light``: fingerprint records, stop at the first divergent step."""
    status = on_status or (lambda s: None)
    status("starting workers")
    workers, data = _start(config, light)
    traces: list[TraceWriter] = []
    try:
        status("loading setups")
        ready = [wait_ready(w, load_timeout(config.step_timeout)) for w in workers]
        infos = [r[0] for r in ready]
        params = match_by_order(infos[0].params, infos[1].params)
        if not params.ok:
            raise ParameterMismatch("The two setups' parameters cannot be paired by order and shape.",
                                    table_a=infos[0].params, table_b=infos[1].params, problems=params.problems)
        state = match_by_order(infos[0].state, infos[1].state)
        notes = []
        if not state.ok and (infos[0].state or infos[1].state):
            notes.append("non-trainable state not compared: " + "; ".join(state.problems))
        starts = _send_init(config, workers, [(r[1], r[2]) for r in ready], state.ok)
        if config.save_traces:
            traces = _open_traces(config, infos, starts)
        pairing = Pairing(params=params.pairs, state=state.pairs)
        steps: list[StepComparison] = []
        previous: tuple = (None, None)
        diagnosis = None
        diverged = False  # a previous step diverged: later steps are screened, not detailed
        for k in range(config.steps):
            status(f"step {k}")
            records = []
            for w in workers:
                w.step = k
                header, arrays = w.recv(config.step_timeout)
                records.append(StepRecord.from_wire(header, arrays))
            if not light:  # let both sides run the next step while this one is compared
                for w in workers:
                    w.send({"type": "next"})
            for trace, record in zip(traces, records):
                trace.write(record)
            cmp = compare_step(records[0], records[1], pairing, config.tolerance, detail=not diverged)
            if cmp.first and not light and not diverged:
                status("diagnosing")
                # The diagnosis keeps its records: copy them out of the workers' shared memory.
                held = tuple(r.owned() for r in records), tuple(p and p.owned() for p in previous)
                diagnosis = diagnose_step(cmp, steps, *held, starts, tuple(infos), pairing,
                                          config.tolerance, data, noise)
            diverged = diverged or cmp.first is not None
            previous = tuple(records)
            steps.append(cmp)
            if on_step:
                on_step(cmp)
            if light:  # fingerprints compare in microseconds: decide before the next step
                for w in workers:
                    w.send({"type": "stop" if cmp.first else "next"})
                if cmp.first:
                    break
        for w in workers:
            w.recv(config.step_timeout)  # "done"
        if steps:
            notes.extend(steps[0].skipped)
        return CompareResult(config, infos[0], infos[1], steps, notes, runtime_versions(), diagnosis=diagnosis)
    except BaseException:
        for w in workers:
            w.kill()
        raise
    finally:
        for trace in traces:
            trace.close()
        for w in workers:
            w.close()


def _open_traces(config: CompareConfig, infos, starts) -> list[TraceWriter]:
    folder = Path(config.save_traces)
    folder.mkdir(parents=True, exist_ok=True)
    writers = []
    for side, setup, env, info, start in zip("ab", (config.setup_a, config.setup_b), (config.env_a, config.env_b),
                                              infos, starts):
        meta = trace_meta(SetupRef.parse(setup), env, config.data, info, config.steps)
        writers.append(TraceWriter(folder / f"{side}.h5", meta, info, start))
    return writers


def runtime_versions() -> dict[str, str]:
    return {"xentdbg": __version__, "python": platform.python_version()}
