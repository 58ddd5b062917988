"""Lockstep replay: drive two workers step by step and compare what they capture.

This is the Python API behind ``xentdbg compare``::

    from xentdbg import CompareConfig, compare
    result = compare(CompareConfig("a.py", "b.py:setup", steps=10))
    result.first  # the first divergent tensor, or None

The engine moves records; :func:`xentdbg.compare.stream.compare_stream` compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from xentdbg.compare.divergence import Pairing, StepComparison
from xentdbg.compare.fingerprint import FULL_BELOW
from xentdbg.compare.matching import match_by_order
from xentdbg.compare.result import Calibration, CompareConfig, CompareResult, FingerprintPass
from xentdbg.compare.stream import PreviousPair, RecordPair, compare_stream
from xentdbg.data import DataInfo
from xentdbg.data import load as load_data
from xentdbg.diagnose.build import diagnose_step
from xentdbg.errors import ParameterMismatch
from xentdbg.findings import Diagnosis
from xentdbg.records import CaptureMode, SideInfo, StepRecord
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.process import WorkerProcess, load_timeout, start_worker, wait_ready
from xentdbg.trace.meta import trace_meta
from xentdbg.trace.writer import TraceWriter
from xentdbg.version import runtime_versions

Status = Callable[[str], None]
Starts = list[tuple[list, list]]


def _start(config: CompareConfig, capture: CaptureMode) -> tuple[tuple[WorkerProcess, WorkerProcess], DataInfo]:
    """Both workers, loading their setups, and the data (for the diagnosis)."""
    refs = [SetupRef.parse(config.setup_a), SetupRef.parse(config.setup_b)]
    for ref in refs:
        ref.check()
    data = load_data(config.data)  # fail fast on bad data options, before starting two frameworks
    return (start_worker("A", refs[0], config.env_a, config.data, config.steps, capture),
            start_worker("B", refs[1], config.env_b, config.data, config.steps, capture)), data


def _send_init(config: CompareConfig, workers: tuple[WorkerProcess, WorkerProcess], values: Starts,
               state_ok: bool) -> Starts:
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
            on_status: Status | None = None,
            on_pass: Callable[[str, int], None] | None = None) -> CompareResult:
    """Replay both setups in lockstep for ``config.steps`` steps and compare every step.

    With ``config.calibrate``, each setup is first replayed against itself
    (:mod:`xentdbg.replay.calibrate`); the measured noise sets the tolerances and is
    passed to the diagnosis. With ``config.capture`` :attr:`CaptureMode.FINGERPRINT`,
    the first pass captures light records as fingerprints
    (:mod:`xentdbg.compare.fingerprint`) and stops at the first step whose fingerprints
    differ; a second pass replays both setups from the start with full capture up to
    that step. ``on_pass(description, steps)`` announces each pass.

    Raises :class:`~xentdbg.errors.UsageError` (bad setup, mismatched parameters) or
    :class:`~xentdbg.errors.SetupFailed` (a side raised, died or hung)."""
    announce = on_pass or (lambda d, n: None)
    calibration: Calibration | None = None
    if config.calibrate:
        from xentdbg.replay.calibrate import calibrate

        announce("calibrating", 0)
        calibration = calibrate(config, lambda c: _replay(c, CaptureMode.FULL, None, on_status), on_status)
        announce("replaying", config.steps)
        config = replace(config, tolerance=calibration.tolerance)
    noise = calibration.phase_noise if calibration else None
    if config.capture is CaptureMode.FULL:
        result = _replay(config, CaptureMode.FULL, on_step, on_status, noise)
    else:
        result = _two_passes(config, on_step, on_status, announce, noise)
    result.calibration = calibration
    return result


def _two_passes(config: CompareConfig, on_step: Callable[[StepComparison], None] | None, on_status: Status | None,
                announce: Callable[[str, int], None], noise: dict[str, float] | None) -> CompareResult:
    """``--fingerprint``: fingerprints until the first difference, then full capture up to it."""
    announce("pass 1: fingerprints", config.steps)
    light = _replay(replace(config, save_traces=None), CaptureMode.FINGERPRINT, on_step, on_status, noise)
    flagged = light.first
    light.fingerprint_pass = FingerprintPass(len(light.steps), flagged.label if flagged else None)
    if flagged is None:
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
    full = _replay(replace(config, steps=c + 1), CaptureMode.FULL, on_step, on_status, noise)
    full.config = config
    full.fingerprint_pass = light.fingerprint_pass
    full.notes.insert(0, f"--fingerprint: pass 1 flagged {flagged.label}; pass 2 replayed steps 0..{c} "
                         "with full capture.")
    if full.first is None:
        full.notes.insert(1, f"pass 2 found no divergence in steps 0..{c}: the setups do not replay "
                             "deterministically; run without --fingerprint, or with --calibrate.")
    return full


def _replay(config: CompareConfig, capture: CaptureMode, on_step: Callable[[StepComparison], None] | None,
            on_status: Status | None, noise: dict[str, float] | None = None) -> CompareResult:
    """One lockstep replay with ``capture``; a fingerprint replay stops at the first divergent
    step. ``noise``: the calibrated noise floor per phase, for the diagnosis."""
    status = on_status or (lambda s: None)
    status("starting workers")
    workers, data = _start(config, capture)
    traces: list[TraceWriter] = []
    try:
        status("loading setups")
        ready = [wait_ready(w, load_timeout(config.step_timeout)) for w in workers]
        infos = (ready[0][0], ready[1][0])
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

        def diagnose(cmp: StepComparison, history: list[StepComparison], records: RecordPair,
                     previous: PreviousPair) -> Diagnosis:
            status("diagnosing")
            # The diagnosis keeps its records: copy them out of the workers' shared memory.
            held = (records[0].owned(), records[1].owned())
            before = (previous[0] and previous[0].owned(), previous[1] and previous[1].owned())
            return diagnose_step(cmp, history, held, before, (starts[0], starts[1]), infos, pairing,
                                 config.tolerance, data, noise)

        full = capture is CaptureMode.FULL
        found = compare_stream(_lockstep(workers, config, capture, traces, status), pairing, config.tolerance,
                               diagnose=diagnose if full else None, stop_at_first=not full, on_step=on_step)
        if found.stopped:
            for w in workers:
                w.send({"type": "stop"})
        for w in workers:
            w.recv(config.step_timeout)  # "done"
        return CompareResult(config, infos[0], infos[1], found.steps, notes + found.notes, runtime_versions(),
                             capture=capture, diagnosis=found.diagnosis)
    except BaseException:
        for w in workers:
            w.kill()
        raise
    finally:
        for trace in traces:
            trace.close()
        for w in workers:
            w.close()


def _lockstep(workers: tuple[WorkerProcess, WorkerProcess], config: CompareConfig, capture: CaptureMode,
              traces: list[TraceWriter], status: Status) -> Iterator[RecordPair]:
    """Both sides' record of each step, in order; writes them to the traces.

    Full capture lets both sides run the next step while this one is compared. A
    fingerprint replay asks for the next step only when the consumer asks for the next
    pair (fingerprints compare in microseconds), so it can stop both sides at a
    divergence; the consumer then sends ``stop``."""
    for k in range(config.steps):
        status(f"step {k}")
        records = []
        for w in workers:
            w.step = k
            header, arrays = w.recv(config.step_timeout)
            records.append(StepRecord.from_wire(header, arrays))
        if capture is CaptureMode.FULL:
            for w in workers:
                w.send({"type": "next"})
        for trace, record in zip(traces, records):
            trace.write(record)
        yield records[0], records[1]
        if capture is CaptureMode.FINGERPRINT:
            for w in workers:
                w.send({"type": "next"})


def _open_traces(config: CompareConfig, infos: tuple[SideInfo, SideInfo], starts: Starts) -> list[TraceWriter]:
    assert config.save_traces is not None
    folder = Path(config.save_traces)
    folder.mkdir(parents=True, exist_ok=True)
    writers = []
    for side, setup, env, info, start in zip("ab", (config.setup_a, config.setup_b), (config.env_a, config.env_b),
                                              infos, starts):
        ref = SetupRef.parse(setup)
        meta = trace_meta(str(ref), ref.content_hash(), env, config.data, info, config.steps)
        writers.append(TraceWriter(folder / f"{side}.h5", meta, info, start))
    return writers
