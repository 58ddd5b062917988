"""Lockstep replay: drive two workers step by step and compare what they capture.

This is the Python API behind ``xentdbg compare``::

    from xentdbg import CompareConfig, compare
    result = compare(CompareConfig("a.py", "b.py:setup", steps=10))
    result.first  # the first divergent tensor, or None

The engine moves records; :func:`xentdbg.compare.stream.compare_stream` compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xentdbg.compare.alignment import SAMPLES
from xentdbg.compare.crossfeed import CROSS_FED_PHASES, CrossFeed, judge
from xentdbg.compare.divergence import Pairing, Realigned, StepComparison, compare_step
from xentdbg.compare.fingerprint import FULL_BELOW
from xentdbg.compare.oracle import Float64Check
from xentdbg.compare.params import ParamMatching, match_parameters, transfer
from xentdbg.compare.result import Calibration, CompareConfig, CompareResult, FingerprintPass
from xentdbg.compare.stream import PreviousPair, RecordPair, compare_stream
from xentdbg.data import DataInfo
from xentdbg.data import load as load_data
from xentdbg.diagnose.build import diagnose_step
from xentdbg.errors import ParameterMismatch
from xentdbg.findings import Diagnosis, jsonable
from xentdbg.records import CaptureMode, SideInfo, StepRecord, start_record
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.oracle import Float64Oracle, worth_checking
from xentdbg.replay.pairfile import load_pair_file
from xentdbg.replay.process import WorkerProcess, load_timeout, start_worker, wait_ready
from xentdbg.replay.tracing import KeptSteps, check_budget, estimate_traces, written
from xentdbg.trace.meta import trace_meta
from xentdbg.trace.writer import TraceWriter
from xentdbg.version import runtime_versions

Status = Callable[[str], None]
Starts = list[tuple[list, list]]


def _start(config: CompareConfig, capture: CaptureMode
           ) -> tuple[tuple[WorkerProcess, WorkerProcess], DataInfo, dict[str, str] | None]:
    """Both workers, loading their setups, the data (for the diagnosis) and the ``--pair``
    file's mapping (read before any worker starts, so a bad file fails fast)."""
    refs = [SetupRef.parse(config.setup_a), SetupRef.parse(config.setup_b)]
    for ref in refs:
        ref.check()
    data = load_data(config.data)  # fail fast on bad data options, before starting two frameworks
    explicit = load_pair_file(config.pair) if config.pair else None  # and on a bad pair file
    a = start_worker("A", refs[0], config.env_a, config.data, config.steps, capture)
    try:
        b = start_worker("B", refs[1], config.env_b, config.data, config.steps, capture)
    except BaseException:
        a.close(grace=0.0)  # side B could not start: side A's worker must not outlive the run
        raise
    return (a, b), data, explicit


def _send_init(config: CompareConfig, workers: tuple[WorkerProcess, WorkerProcess], values: Starts,
               infos: tuple[SideInfo, SideInfo], m: ParamMatching) -> Starts:
    """Send the chosen side's initial weights (and the state that pairs) to the other side,
    laid out as that side's (:func:`~xentdbg.compare.params.transfer`: paired by
    structure, reshaped over size-1 axes, a frozen layer's values into the state slot).

    Returns the initial parameters and state each side starts from."""
    src = {"a": 0, "b": 1}.get(config.init)
    starts = []
    for k, w in enumerate(workers):
        if src is None or k == src:
            w.send({"type": "init", "params": False, "state": False})
            starts.append(values[k])
            continue
        info = infos[k]
        params, state = transfer(m, *values[src], info.params, info.state, to_b=k == 1, own_state=values[k][1])
        assert params is not None and state is not None  # every parameter pairs; state falls back to its own
        send_state = bool(state) and any(a is not b for a, b in zip(state, values[k][1]))
        w.send({"type": "init", "params": True, "state": send_state}, params + (state if send_state else []))
        starts.append((params, state if send_state else values[k][1]))
    return starts


def _match(infos: tuple[SideInfo, SideInfo], explicit: dict[str, str] | None) -> ParamMatching:
    """Pair the two sides' parameters and state (:func:`~xentdbg.compare.params.match_parameters`;
    ``explicit``: the ``--pair`` file's mapping); raises :class:`ParameterMismatch` when the
    parameters do not all pair."""
    m = match_parameters(infos[0].params, infos[1].params, infos[0].state, infos[1].state, explicit)
    if not m.ok:
        raise ParameterMismatch("The two setups' parameters cannot be paired by layer, role and shape.",
                                table_a=infos[0].params, table_b=infos[1].params, problems=m.problems)
    return m


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
        # A self-replay measures noise; no verdict is taken from it, so no float64 re-run.
        calibration = calibrate(config, lambda c: _replay(replace(c, float64=False), CaptureMode.FULL, None,
                                                          on_status), on_status)
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
    announce(f"pass 2: full capture from step 0 (pass 1 flagged step {c})", config.steps)
    # Pass 2 runs on past step c: when the cross-feed shows step c's difference inherited
    # (drift), the first step that introduces one, if any, lies further on.
    full = _replay(config, CaptureMode.FULL, on_step, on_status, noise, stop_at_first=True)
    full.config = config
    full.fingerprint_pass = light.fingerprint_pass
    found = full.first
    full.notes.insert(0, f"--fingerprint: pass 1 flagged {flagged.label}; pass 2 replayed with full capture "
                         + (f"up to {found.label}." if found else f"all {len(full.steps)} steps."))
    if found is None and not full.drift:
        full.notes.insert(1, f"pass 2 found no divergence in {len(full.steps)} steps: the setups do not replay "
                             "deterministically; run without --fingerprint, or with --calibrate.")
    return full


def _replay(config: CompareConfig, capture: CaptureMode, on_step: Callable[[StepComparison], None] | None,
            on_status: Status | None, noise: dict[str, float] | None = None,
            stop_at_first: bool = False) -> CompareResult:
    """One lockstep replay with ``capture``; a fingerprint replay stops at the first divergent
    step, a full one with ``stop_at_first`` at the first step that introduces a divergence.
    ``noise``: the calibrated noise floor per phase, for the diagnosis."""
    status = on_status or (lambda s: None)
    status("starting workers")
    workers, data, explicit = _start(config, capture)
    traces: list[KeptSteps] = []
    oracle: Float64Oracle | None = None
    try:
        status("loading setups")
        ready = [wait_ready(w, load_timeout(config.step_timeout)) for w in workers]
        infos = (ready[0][0], ready[1][0])
        matched = _match(infos, explicit)
        notes = list(matched.notes)
        if matched.state_problems:
            notes.append("non-trainable state not compared: " + "; ".join(matched.state_problems))
        if config.save_traces:  # before _send_init: the workers train once they have their initial values
            estimate = estimate_traces(infos, data, config.steps, config.trace_every, config.trace_phases)
            check_budget(estimate, config.trace_budget, ("--trace-budget", "--trace-only", "--trace-every"),
                         f"--save-traces {config.save_traces}")
        starts = _send_init(config, workers, [(r[1], r[2]) for r in ready], infos, matched)
        if config.save_traces:
            traces = _open_traces(config, infos, starts)
        pairing = Pairing(params=matched.params, state=matched.state, frozen=matched.frozen)

        start = (start_record(infos[0], *starts[0]), start_record(infos[1], *starts[1]))

        def diagnose(cmp: StepComparison, history: list[StepComparison], records: RecordPair,
                     previous: PreviousPair) -> Diagnosis:
            status("diagnosing")
            # A step re-run cross-fed is diagnosed on its same-weights view (both sides from
            # one side's pre-step values): the view that shows the introduced difference.
            records, previous = feeder.view_of(cmp, records, previous)
            # The diagnosis keeps its records: copy them out of the workers' shared memory.
            held = (records[0].owned(), records[1].owned())
            before = (previous[0] and previous[0].owned(), previous[1] and previous[1].owned())
            float64 = cmp.crossfeed.float64 if cmp.crossfeed is not None else None
            return diagnose_step(cmp.deciding, history, held, before, (starts[0], starts[1]), infos, pairing,
                                 config.tolerance, data, noise, float64)

        full = capture is CaptureMode.FULL
        # Updates decide only where both sides can re-run them on the same gradients: the
        # recorded updates of parameters with gradients at the float32 noise floor (a bias
        # before BatchNorm) differ by more than their own scale, which only a re-run settles.
        updates = full and all("weights" in info.probe for info in infos)
        feeder = _CrossFeeder(workers, infos, pairing, config, status)
        feeder.updates = updates
        feeder.traces = traces
        if full and config.float64:
            feeder.oracle = oracle = Float64Oracle(config, infos)
        if full and not updates:
            notes.append("updates (w_after - w_before) not compared at their own scale: "
                         + ", ".join(f"side {s} ({i.kind}) cannot re-run its optimizer step"
                                     for s, i in zip("AB", infos) if "weights" not in i.probe)
                         + "; weights are compared at the weights' scale.")
        found = compare_stream(_lockstep(workers, config, capture, traces, status), pairing, config.tolerance,
                               diagnose=diagnose if full else None, stop_at_first=stop_at_first or not full,
                               on_step=on_step, start=start, crossfeed=feeder if full else None, updates=updates)
        if found.stopped:
            for w in workers:
                w.send({"type": "stop"})
        for w in workers:
            while w.recv(config.step_timeout)[0].get("type") != "done":
                pass  # full capture: the step the worker ran ahead
        notes += feeder.notes
        if traces:
            notes.append(written(traces, estimate))
        return CompareResult(config, infos[0], infos[1], found.steps, notes + found.notes, runtime_versions(),
                             capture=capture, diagnosis=found.diagnosis, drift=found.drift)
    except BaseException:
        for w in workers:
            w.kill()
        raise
    finally:
        for trace in traces:
            trace.close()
        for w in workers:
            w.close()
        if oracle is not None:
            oracle.close()


def _lockstep(workers: tuple[WorkerProcess, WorkerProcess], config: CompareConfig, capture: CaptureMode,
              traces: list[KeptSteps], status: Status) -> Iterator[RecordPair]:
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


class _CrossFeeder:
    """The cross-feed of a flagged step (:mod:`xentdbg.compare.crossfeed`): each worker
    re-runs the step from the other side's pre-step weights, state and gradients."""

    def __init__(self, workers: tuple[WorkerProcess, WorkerProcess], infos: tuple[SideInfo, SideInfo],
                 pairing: Pairing, config: CompareConfig, status: Status):
        self.workers, self.infos, self.pairing, self.config, self.status = workers, infos, pairing, config, status
        self.notes: list[str] = []
        self._views: dict[int, tuple[RecordPair, PreviousPair]] = {}
        self._broken: str | None = None  # a probe failed once: later steps are not probed again
        self.updates = True  # whether updates decide (both sides re-run their optimizer step)
        self.oracle: Float64Oracle | None = None  # float64 re-runs of small introduced differences
        self.traces: list[KeptSteps] = []  # --save-traces: each side's re-runs go to its trace
        self._optimizer_unpaired = False  # the optimizer states did not pair once: never asked again

    def __call__(self, cmp: StepComparison, records: RecordPair, before: PreviousPair) -> CrossFeed:
        flagged = cmp.flagged
        assert flagged is not None
        if flagged.phase == "inputs" and cmp.alignment is not None and cmp.alignment.kind == SAMPLES:
            cmp.realigned = self._realign(cmp, records, before)
        if flagged.phase not in CROSS_FED_PHASES:
            return judge(cmp, None, None, set())
        if self._broken:
            return judge(cmp, None, None, set(), self._broken)
        pre_a, pre_b = before
        if pre_a is None or pre_b is None:
            return judge(cmp, None, None, set(), "no pre-step values")
        if pre_a.step < 0 and self.config.init == "own":
            # Drift is what earlier steps carried forward; at step 0 with --init own the sides
            # start apart, and what they carry is that choice, not rounding.
            return judge(cmp, None, None, set(), "each side started from its own initial weights (--init own)")
        self.status(f"cross-feeding step {cmp.step}")
        ra, rb = records
        ma, mb = len(self.infos[0].state), len(self.infos[1].state)
        a_for_b, b_for_a = self._values(records, (pre_a, pre_b))
        if a_for_b.params is None or b_for_a.params is None:
            return judge(cmp, None, None, set(), "the parameters do not pair one to one")
        reran = self._rerun(cmp.step, a_for_b, b_for_a)
        if isinstance(reran, str):
            self._broken = reran
            self.notes.append(f"cross-feed unavailable ({self._broken}): steps are judged on their recorded "
                              "values, so float32 drift cannot be told from a difference a step introduces.")
            return judge(cmp, None, None, set(), self._broken)
        fed_b, fed_a = _fed(reran[0], rb), _fed(reran[1], ra)
        # "before" of each re-run: the values it was fed, under its own side's names
        pre_a_as_b = _named(self.infos[1], a_for_b)
        pre_b_as_a = _named(self.infos[0], b_for_a)
        tol = self.config.tolerance
        view_a = compare_step(ra, fed_b, self.pairing, tol, before=(pre_a, pre_a_as_b), updates=self.updates)
        view_b = compare_step(fed_a, rb, self.pairing, tol, before=(pre_b_as_a, pre_b), updates=self.updates)
        covered = _covered(fed_a, fed_b, a_for_b, b_for_a)
        # only the latest step's views are kept: the diagnosis runs right after its cross-feed
        from_a = view_a.first is not None or view_b.first is None
        self._views = {cmp.step: ((ra, fed_b), (pre_a, pre_a_as_b)) if from_a else ((fed_a, rb), (pre_b_as_a, pre_b))}
        for trace, fed in zip(self.traces, (fed_a, fed_b)):
            trace.write_rerun(cmp.step, "crossfed", fed.tensors)
        cf = judge(cmp, view_a, view_b, covered)
        if self.oracle is not None and cf.inherited:
            self.oracle.prestart()  # drift: let the float64 workers load while the replay goes on
        if self.oracle is not None and cf.introduced is not None and cf.ran and not cf.uncovered:
            view = view_a if from_a else view_b
            if worth_checking(view) is None:
                if (ma or mb) and (a_for_b.state is None or b_for_a.state is None):
                    cf.float64 = Float64Check(unavailable="the two sides' state does not pair")
                else:
                    self.status(f"re-running step {cmp.step} in float64")
                    own_a = (pre_a.arrays("weights"), pre_a.arrays("state") or None)
                    own_b = (pre_b.arrays("weights"), pre_b.arrays("state") or None)
                    values = ((own_a, (a_for_b.params, a_for_b.state)) if from_a
                              else ((b_for_a.params, b_for_a.state), own_b))
                    cf.float64 = self.oracle.check(view, self._views[cmp.step][0], "A" if from_a else "B",
                                                   values, self.workers)
                    if self.oracle.last is not None and cf.float64.ran:
                        for trace, rerun in zip(self.traces, self.oracle.last):
                            trace.write_rerun(cmp.step, "float64", rerun.tensors)
        for trace in self.traces:
            trace.write_verdict(cmp.step, jsonable(cf.to_dict()))
        return cf

    def _values(self, records: RecordPair, before: tuple[StepRecord, StepRecord]) -> tuple[_Values, _Values]:
        """A's pre-step weights and state and its step's gradients laid out as B's (for B's
        re-run), and B's as A's (for A's): :func:`~xentdbg.compare.params.transfer`. Each is
        None unless every slot of the other side is covered (state: None where that side
        holds none)."""
        out = []
        for pre, record, dst, to_b in ((before[0], records[0], self.infos[1], True),
                                       (before[1], records[1], self.infos[0], False)):
            params, state = transfer(self.pairing, pre.arrays("weights"), pre.arrays("state"), dst.params,
                                     dst.state, to_b)
            grads, _ = transfer(self.pairing, record.arrays("gradients"), [], dst.params, [], to_b)
            out.append(_Values(params, state if dst.state else None, grads))
        return out[0], out[1]

    def _rerun(self, step: int, a_for_b: _Values, b_for_a: _Values,
               batches: tuple[list[np.ndarray], list[np.ndarray]] | None = None) -> tuple[StepRecord, StepRecord] | str:
        """Re-run ``step`` on both workers: B from A's values, A from B's (each with the other
        side's per-parameter optimizer state, :meth:`_optimizers`), on its own batch or, with
        ``batches`` (A's, B's), on the other side's. Returns (B's re-run, A's re-run), or
        what a side answered instead."""
        assert a_for_b.params is not None and b_for_a.params is not None  # the callers check they pair
        timeout = self.config.step_timeout
        wa, wb = self.workers
        opt_for_b, opt_for_a = self._optimizers(step) if self.updates else (None, None)
        batch_for_b, batch_for_a = batches if batches is not None else (None, None)
        writers = (wb.request_probe(step, a_for_b.params, a_for_b.state, a_for_b.grads, opt_for_b, batch_for_b),
                   wa.request_probe(step, b_for_a.params, b_for_a.state, b_for_a.grads, opt_for_a, batch_for_a))
        (hb, xb), (ha, xa) = wb.reply(writers[0], "probed", timeout), wa.reply(writers[1], "probed", timeout)
        errors = [f"side {s}: {h['error']}" for s, h in (("A", ha), ("B", hb)) if "error" in h]
        if errors:
            return "; ".join(errors)
        return StepRecord.from_wire(hb, xb), StepRecord.from_wire(ha, xa)

    def _realign(self, cmp: StepComparison, records: RecordPair, before: PreviousPair) -> Realigned:
        """A step whose sides trained on other samples, re-run on each side on the batch
        the other side used (:meth:`~xentdbg.adapters.base.Adapter.held_batch`), from the
        other side's pre-step weights, state, gradients and optimizer state: B on A's
        batch from A's values against A's record, A on B's batch from B's values against
        B's record (:class:`~xentdbg.compare.divergence.Realigned`). What still differs in
        a view is not the data order. (Not re-run in float64, not written to traces.)"""
        pre_a, pre_b = before
        if self._broken:
            return Realigned(None, None, unavailable=self._broken)
        if pre_a is None or pre_b is None:
            return Realigned(None, None, unavailable="no pre-step values")
        self.status(f"re-running step {cmp.step} on each other's batch")
        timeout = self.config.step_timeout
        batches = []
        for side, w in zip("AB", self.workers):
            header, arrays = w.reply(w.request({"type": "batch", "step": cmp.step}), "batch", timeout)
            if "error" in header:
                return Realigned(None, None, unavailable=f"side {side} does not give its batch: {header['error']}")
            batches.append(arrays)
        ra, rb = records
        a_for_b, b_for_a = self._values(records, (pre_a, pre_b))
        if a_for_b.params is None or b_for_a.params is None:
            return Realigned(None, None, unavailable="the parameters do not pair one to one")
        reran = self._rerun(cmp.step, a_for_b, b_for_a, (batches[0], batches[1]))
        if isinstance(reran, str):
            return Realigned(None, None, unavailable=reran)
        b_on_a = _fed_on(reran[0], rb, ra)  # B's step on A's batch, from A's values
        a_on_b = _fed_on(reran[1], ra, rb)
        pre_a_as_b, pre_b_as_a = _named(self.infos[1], a_for_b), _named(self.infos[0], b_for_a)
        tol = self.config.tolerance
        view_a = compare_step(ra, b_on_a, self.pairing, tol, before=(pre_a, pre_a_as_b), updates=self.updates)
        view_b = compare_step(a_on_b, rb, self.pairing, tol, before=(pre_b_as_a, pre_b), updates=self.updates)
        covered = _covered(a_on_b, b_on_a, a_for_b, b_for_a)
        if "weights" in covered:
            covered.add("updates")
        differing = {t.phase for t in cmp.tensors if not t.ok and t.phase in CROSS_FED_PHASES}
        from_a = view_a.first is not None or view_b.first is None
        held = ((ra.owned(), b_on_a), (pre_a.owned(), pre_a_as_b)) if from_a else \
            ((a_on_b, rb.owned()), (pre_b_as_a, pre_b.owned()))
        return Realigned(view_a, view_b, sorted(differing - covered), records=held[0], before=held[1])

    def _optimizers(self, step: int) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
        """The optimizer states to re-run B's and A's update from: each side's own
        (:meth:`~xentdbg.adapters.base.Adapter.held_optimizer`) with the other side's
        per-parameter arrays in place of its own, when the two states pair one to one in
        order, shape and dtype (the same optimizer on both sides); else ``(None, None)``,
        noted once: each side then re-runs its update from its own state."""
        if self._optimizer_unpaired:
            return None, None
        got = []
        for side, w in zip("AB", self.workers):
            header, arrays = w.reply(w.request({"type": "optimizer", "step": step}), "optimizer",
                                     self.config.step_timeout)
            if "error" in header:
                return self._unpaired(f"side {side}: {header['error']}")
            got.append(arrays)
        # Only per-parameter state (momentum, Adam's moments: a parameter's shape) drifts with
        # the weights, and only it crosses. Scalars are hyperparameters and counters (Keras 3
        # keeps the learning rate and `iterations` among optimizer.variables, tf_keras only
        # `iterations`, optax's inject_hyperparams its hyperparameters in the state): each
        # side keeps its own, or a learning rate 10x off would be copied across and vanish.
        # Keras 3 and tf_keras both list a parameter's slots together, in parameter order
        # (Adam: m, v of the first parameter, then of the next), so the per-parameter arrays
        # pair in order when the parameters do.
        shapes = {tuple(p.shape) for info in self.infos for p in info.params}

        def slots(arrays: list[np.ndarray]) -> list[int]:
            return [k for k, a in enumerate(arrays) if a.dtype.kind == "f" and a.ndim > 0 and tuple(a.shape) in shapes]

        ka, kb = slots(got[0]), slots(got[1])
        if [(got[0][k].shape, got[0][k].dtype) for k in ka] != [(got[1][k].shape, got[1][k].dtype) for k in kb]:
            return self._unpaired(f"A's per-parameter state is {len(ka)} arrays, B's {len(kb)}; they do not pair "
                                  "one to one by shape and dtype")
        if sorted(self.pairing.params) != [(k, k) for k in range(len(self.infos[0].params))]:
            return self._unpaired("the parameters pair in another order on the two sides")
        a_for_b, b_for_a = list(got[1]), list(got[0])
        for i, j in zip(ka, kb):
            a_for_b[j], b_for_a[i] = got[0][i], got[1][j]
        return a_for_b, b_for_a

    def _unpaired(self, why: str) -> tuple[None, None]:
        self._optimizer_unpaired = True
        self.notes.append(f"optimizer state not cross-fed ({why}): each side re-ran its update from its own "
                          "optimizer state (momentum, Adam's moments), which drifts with the weights, so under a "
                          "stateful optimizer an update difference near the tolerance may be inherited.")
        return None, None

    def view_of(self, cmp: StepComparison, records: RecordPair, previous: PreviousPair
                ) -> tuple[RecordPair, PreviousPair]:
        """The records a cross-fed step is diagnosed on: those of the view that showed the
        introduced difference; the recorded ones otherwise."""
        cf = cmp.crossfeed
        if cf is None or not cf.ran or cmp.step not in self._views or cf.first is cf.recorded:
            return records, previous
        return self._views[cmp.step]


@dataclass
class _Values:
    params: list[np.ndarray] | None
    state: list[np.ndarray] | None
    grads: list[np.ndarray] | None


def _covered(fed_a: StepRecord, fed_b: StepRecord, a_for_b: _Values, b_for_a: _Values) -> set[str]:
    """The cross-fed phases both re-runs produced from the same values: without gradients
    recorded the update was not re-run on the same ones, and state that does not pair
    was re-run from each side's own."""
    covered = {p for p in CROSS_FED_PHASES if fed_a.tensors.get(p) and fed_b.tensors.get(p)}
    if not (a_for_b.grads and b_for_a.grads):
        covered.discard("weights")
    if "state" in covered and (a_for_b.state is None or b_for_a.state is None):
        covered.discard("state")
    return covered


def _fed(probe: StepRecord, own: StepRecord) -> StepRecord:
    """A re-run's record completed with what the step was fed (inputs, flags, digests):
    those are the step's facts and agree on both sides whenever a cross-feed runs."""
    tensors = {"inputs": own.tensors.get("inputs", []), **probe.tensors}
    return StepRecord(own.step, tensors, dict(own.flags), dict(own.digests), replicas=probe.replicas)


def _fed_on(probe: StepRecord, own: StepRecord, batch_owner: StepRecord) -> StepRecord:
    """A re-run on the other side's batch, completed as :func:`_fed` does: the inputs and
    digests of the side whose batch it ran on, its own side's training flags."""
    tensors = {"inputs": batch_owner.tensors.get("inputs", []), **probe.tensors}
    return StepRecord(own.step, tensors, dict(own.flags), dict(batch_owner.digests), replicas=probe.replicas)


def _named(info: SideInfo, values: _Values) -> StepRecord:
    assert values.params is not None
    return start_record(info, values.params, values.state or [])


def _open_traces(config: CompareConfig, infos: tuple[SideInfo, SideInfo], starts: Starts) -> list[KeptSteps]:
    assert config.save_traces is not None
    folder = Path(config.save_traces)
    folder.mkdir(parents=True, exist_ok=True)
    writers = []
    for side, setup, env, info, start in zip("ab", (config.setup_a, config.setup_b), (config.env_a, config.env_b),
                                              infos, starts):
        ref = SetupRef.parse(setup)
        meta = trace_meta(str(ref), ref.content_hash(), env, config.data, info, config.steps, config.trace_every)
        writers.append(KeptSteps(TraceWriter(folder / f"{side}.h5", meta, info, start, config.trace_phases),
                                 config.trace_every))
    return writers
