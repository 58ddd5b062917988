"""Run one setup and record everything it captures into a trace (``xentdbg trace``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xentdbg.compare.params import match_parameters, transfer
from xentdbg.data import DataSpec
from xentdbg.data import load as load_data
from xentdbg.errors import ParameterMismatch, UsageError
from xentdbg.records import PHASES, SideInfo, StepRecord
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.process import load_timeout, start_worker, wait_ready
from xentdbg.trace.meta import trace_meta
from xentdbg.trace.reader import load_trace
from xentdbg.trace.writer import TraceWriter

COMPRESSIONS = ("none", "gzip", "lzf")


@dataclass(frozen=True)
class TraceConfig:
    """What ``record_trace`` runs. ``phases``: the phases to keep; ``every``: keep steps
    0, k, 2k, ...; ``init_from``: a trace whose initial weights the setup starts from."""

    setup: str
    out: str
    data: DataSpec = field(default_factory=DataSpec)
    steps: int = 10
    env: dict[str, str] = field(default_factory=dict)
    phases: tuple[str, ...] = PHASES
    every: int = 1
    compression: str = "none"
    init_from: str | None = None
    step_timeout: float | None = None

    def check(self) -> None:
        unknown = sorted(set(self.phases) - set(PHASES))
        if unknown:
            raise UsageError(f"--only {','.join(unknown)}: unknown phase(s).", hint=f"Phases: {', '.join(PHASES)}.")
        if self.compression not in COMPRESSIONS:
            raise UsageError(f"--compression {self.compression!r}: choose one of {', '.join(COMPRESSIONS)}.")
        if self.every < 1:
            raise UsageError(f"--every {self.every} must be at least 1.")


@dataclass
class TraceSummary:
    path: str
    info: SideInfo
    steps_written: int


def _initial_from(path: str, info: SideInfo, own_state: list):
    """Initial parameters and state of another trace, laid out as this setup's
    (:func:`~xentdbg.compare.params.transfer`); state that does not pair keeps ``own_state``."""
    with load_trace(path) as other:
        matched = match_parameters(other.info.params, info.params, other.info.state, info.state)
        if not matched.ok:
            raise ParameterMismatch(f"--init-from {path}: its parameters cannot be paired with this setup's.",
                                    table_a=other.info.params, table_b=info.params, problems=matched.problems,
                                    labels=("trace", "setup"))
        init_params, init_state = other.initial()
        params, state = transfer(matched, init_params, init_state, info.params, info.state, to_b=True,
                                 own_state=own_state)
        assert params is not None and state is not None  # every parameter pairs; state falls back to its own
        return params, state


def record_trace(config: TraceConfig, on_step: Callable[[int], None] | None = None,
                 on_status: Callable[[str], None] | None = None) -> TraceSummary:
    """Train ``config.setup`` for ``config.steps`` steps in a worker and write the trace."""
    status = on_status or (lambda s: None)
    config.check()
    ref = SetupRef.parse(config.setup)
    ref.check()
    load_data(config.data)
    status("starting worker")
    worker = start_worker("A", ref, config.env, config.data, config.steps)
    writer = None
    try:
        status("loading setup")
        info, params, state = wait_ready(worker, load_timeout(config.step_timeout))
        if config.init_from:
            params, state = _initial_from(config.init_from, info, state)
            worker.send({"type": "init", "params": True, "state": bool(state)}, params + state)
        else:
            worker.send({"type": "init", "params": False, "state": False})
        meta = trace_meta(str(ref), ref.content_hash(), config.env, config.data, info, config.steps, config.every)
        if config.init_from:
            meta["init_from"] = config.init_from
        compression = None if config.compression == "none" else config.compression
        writer = TraceWriter(config.out, meta, info, (params, state), config.phases, compression)
        written = 0
        for k in range(config.steps):
            status(f"step {k}")
            worker.step = k
            header, arrays = worker.recv(config.step_timeout)
            if k % config.every == 0:
                writer.write(StepRecord.from_wire(header, arrays))
                written += 1
            worker.send({"type": "next"})
            if on_step:
                on_step(k)
        worker.recv(config.step_timeout)  # "done"
        return TraceSummary(config.out, info, written)
    except BaseException:
        worker.kill()
        raise
    finally:
        if writer is not None:
            writer.close()
        worker.close()
