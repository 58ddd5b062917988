"""Run one setup and record everything it captures into a trace (``xentdbg trace``)."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xentdbg.compare.params import layer_and_role, match_parameters, transfer
from xentdbg.compare.result import DEFAULT_TRACE_BUDGET
from xentdbg.data import DataInfo, DataSpec
from xentdbg.data import load as load_data
from xentdbg.errors import ParameterMismatch, UsageError
from xentdbg.records import PHASES, SideInfo, StepRecord, TensorSpec
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.process import load_timeout, start_worker, wait_ready
from xentdbg.trace.meta import trace_meta
from xentdbg.trace.ranks import RANK_KEY, RankMeta, exact_digests, rank_path, rank_record
from xentdbg.trace.reader import load_trace
from xentdbg.trace.writer import TraceWriter

COMPRESSIONS = ("none", "gzip", "lzf")

DATASET_OVERHEAD = 800
"""Bytes HDF5 adds to a trace per tensor written (object header, chunk index, name
attribute), measured with h5py 3 on the traces of tests/setups/jax_small.py."""
STEP_OVERHEAD = 1_500
"""Bytes per step beyond its tensors (the step's and its phases' groups, attributes)."""


def check_phases(phases: Sequence[str], flag: str = "--only") -> None:
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise UsageError(f"{flag} {','.join(unknown)}: unknown phase(s).", hint=f"Phases: {', '.join(PHASES)}.")


def parse_phases(only: str | None, flag: str = "--only") -> tuple[str, ...]:
    """The phases a comma-separated ``--only`` names (every phase when it is not given)."""
    if not only:
        return PHASES
    phases = tuple(p.strip() for p in only.split(",") if p.strip())
    check_phases(phases, flag)
    return phases


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str | None, flag: str) -> int | None:
    """A budget in bytes: ``500MB``, ``2GB``, ``1.5GiB`` (kB, MB, GB, TB are powers of 1000;
    KiB, MiB, GiB, TiB of 1024), or a plain number of bytes; ``none`` for no limit, and
    :data:`~xentdbg.compare.result.DEFAULT_TRACE_BUDGET` when not given."""
    if text is None:
        return DEFAULT_TRACE_BUDGET
    t = text.strip().lower()
    if t in ("none", "unlimited"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", t)
    if not m or m.group(2) not in _UNITS:
        raise UsageError(f"{flag} {text!r} is not a size.", hint=f"Examples: {flag} 500MB, {flag} 2GB, {flag} none.")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def fmt_size(n: int) -> str:
    """``250 MB``, ``4.1 GB``, ``812 bytes``: decimal units, as ``--trace-budget`` reads them."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}".removesuffix(".0") + f" {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} bytes"


def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # bfloat16 and the like, where numpy does not know the name
        bits = re.search(r"(\d+)$", dtype)
        return int(bits.group(1)) // 8 if bits else 4


def _nbytes(specs: Sequence[TensorSpec]) -> int:
    return sum(math.prod(s.shape) * _itemsize(s.dtype) for s in specs)


def _layer_tensors(layer: str, index: int, specs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """The parameters and state of leaf layer ``layer`` (the ``index``-th): a JAX loop's
    layer ``layers[i]:Kind`` holds the leaves named ``[i]...``
    (:mod:`xentdbg.adapters.jax_loop`); Keras names a variable ``model/layer/variable``."""
    if layer.startswith("layers["):
        return [s for s in specs if s.name.startswith(f"[{index}]")]
    return [s for s in specs if layer in layer_and_role(s.name)[0]]


def activation_elements(info: SideInfo, features: int) -> int:
    """Per sample, the elements of the layer outputs a step records, as far as the
    handshake tells (it names the layers, not their output shapes): a layer with
    parameters or state outputs the last axis of its largest one (a Dense kernel's units,
    a convolution's filters, a normalization's features: a convolution's spatial axes are
    not known, so convolutions are undercounted); a layer without (an activation, dropout,
    flatten) outputs as many elements as it received."""
    width, total = features, 0
    for i, layer in enumerate(info.layers):
        own = _layer_tensors(layer, i, [*info.params, *info.state])
        if own:
            largest = max(own, key=lambda s: (len(s.shape), math.prod(s.shape)))
            width = largest.shape[-1] if largest.shape else width
        total += width
    return total


def step_bytes(info: SideInfo, data: DataInfo, phases: Sequence[str], replicas: int = 1) -> int:
    """About how many bytes one step of this side takes in a trace that keeps ``phases``
    (the loss always), uncompressed: inputs are per-sample float64 sums of x and y
    (:func:`xentdbg.records.batch_fingerprint`), layer outputs are float32
    (:func:`activation_elements`), gradients and weights the parameters' size, state its own.
    ``replicas`` > 1: a rank file's step (:func:`xentdbg.trace.ranks.rank_record`), whose
    inputs and layer outputs cover one replica's share of the batch (rounded up) and whose
    gradients, state and weights are as large as the reduced trace's."""
    batch = -(-min(data.spec.batch_size, data.spec.subset) // max(replicas, 1))
    features = math.prod(data.input_shape)
    tensors = {"inputs": (2, 2 * batch * 8),
               "activations": (len(info.layers), batch * activation_elements(info, features) * 4),
               "loss": (1, 4),
               "gradients": (len(info.params), _nbytes(info.params)),
               "state": (len(info.state), _nbytes(info.state)),
               "weights": (len(info.params), _nbytes(info.params))}
    kept = set(phases) | {"loss"}
    return STEP_OVERHEAD + sum(n * DATASET_OVERHEAD + size for p, (n, size) in tensors.items() if p in kept)


@dataclass(frozen=True)
class TraceEstimate:
    """What a run will write to its traces, estimated after the workers' handshake and
    before any of them trains (:func:`estimate_traces`); bytes of all files together."""

    initial: int  # the initial parameters and state
    per_step: int  # one written step
    run: int  # steps run
    every: int  # steps 0, every, 2 every, ... are written
    files: int

    @property
    def steps(self) -> int:
        """Steps written to each file."""
        return len(range(0, self.run, self.every))

    @property
    def bytes(self) -> int:
        return self.initial + self.steps * self.per_step

    def describe(self) -> str:
        files = "1 file" if self.files == 1 else f"{self.files} files"
        return f"about {fmt_size(self.bytes)} ({files}, {self.steps:,} steps each)"


def estimate_traces(infos: Sequence[SideInfo], data: DataInfo, steps: int, every: int,
                    phases: Sequence[str], ranks: bool = False) -> TraceEstimate:
    """One trace per side in ``infos``: its initial parameters and state, and each
    written step (steps 0, ``every``, 2 ``every``, ...) as :func:`step_bytes` has it.
    ``ranks``: a side that trains on N > 1 replicas also writes N rank files
    (:mod:`xentdbg.trace.ranks`), each with the same initial values and a rank's step
    (:func:`step_bytes` with ``replicas=N``). The re-runs ``compare`` adds to a flagged
    step are not counted."""
    initial = per_step = files = 0
    for info in infos:
        n = info.replicas if ranks else 1
        copies = 1 + (n if n > 1 else 0)
        own = _nbytes(info.params) + _nbytes(info.state) + DATASET_OVERHEAD * (len(info.params) + len(info.state))
        initial += copies * own
        per_step += step_bytes(info, data, phases) + (n * step_bytes(info, data, phases, n) if n > 1 else 0)
        files += copies
    return TraceEstimate(initial, per_step, steps, every, files)


def check_budget(estimate: TraceEstimate, budget: int | None, flags: tuple[str, str, str],
                 what: str, more: str | None = None) -> None:
    """Refuse (exit 2) a run whose traces would exceed ``budget`` bytes, naming the options
    that fit it; ``flags``: the run's budget, phases and thinning options (``--trace-budget``,
    ``--trace-only``, ``--trace-every``); ``more``: another way, first (``--no-ranks``).
    Nothing is written and no worker has trained yet."""
    if budget is None or estimate.bytes <= budget:
        return
    flag_budget, flag_only, flag_every = flags
    ways = [f"raise {flag_budget} (e.g. {flag_budget} {fmt_size(estimate.bytes * 11 // 10).replace(' ', '')} "
            "or none)", *([more] if more else []),
            f"keep fewer phases with {flag_only} (e.g. {flag_only} loss,gradients)"]
    room = (budget - estimate.initial) // estimate.per_step  # written steps that fit
    if room >= 1:
        every = max(estimate.every, math.ceil(estimate.run / room))
        ways.append(f"keep fewer steps with {flag_every} (e.g. {flag_every} {every} keeps steps 0, {every}, "
                    f"{2 * every}, ...)")
    else:
        ways[-1] += f" ({flag_every} cannot help: the initial values and one step already take more)"
    hint = ", ".join(ways[:-1]) + " or " + ways[-1] + "."
    raise UsageError(
        f"{what} would write {estimate.describe()}, over {flag_budget} {fmt_size(budget)}; nothing was written.",
        hint=hint[0].upper() + hint[1:])


class KeptSteps:
    """A trace that keeps steps 0, ``every``, 2 ``every``, ... (``--every``): the other
    steps, and their re-runs and verdicts, are not written."""

    def __init__(self, writer: TraceWriter, every: int = 1):
        self.writer, self.every = writer, every
        self.path = str(writer.file.filename)
        self.written = 0

    def kept(self, step: int) -> bool:
        return step % self.every == 0

    def write(self, record: StepRecord) -> None:
        if self.kept(record.step):
            self.writer.write(record)
            self.written += 1

    def write_rerun(self, step: int, kind: str, tensors: dict[str, list[tuple[str, np.ndarray]]]) -> None:
        if self.kept(step):
            self.writer.write_rerun(step, kind, tensors)

    def write_verdict(self, step: int, verdict: dict) -> None:
        if self.kept(step):
            self.writer.write_verdict(step, verdict)

    def close(self) -> None:
        self.writer.close()


def written(traces: Sequence[KeptSteps], estimate: TraceEstimate) -> str:
    """Close ``traces`` and say what they hold, against the estimate made before the run."""
    for trace in traces:
        trace.close()
    size = sum(Path(t.path).stat().st_size for t in traces)
    return (f"traces: {fmt_size(size)} written to {' and '.join(t.path for t in traces)} "
            f"({traces[0].written:,} steps each; estimated {fmt_size(estimate.bytes)} before the run)")


@dataclass(frozen=True)
class TraceConfig:
    """What ``record_trace`` runs. ``phases``: the phases to keep; ``every``: keep steps
    0, k, 2k, ...; ``init_from``: a trace whose initial weights the setup starts from;
    ``budget``: refuse to start when the trace would exceed this many bytes (None: no limit)."""

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
    budget: int | None = DEFAULT_TRACE_BUDGET
    ranks: bool = True  # a setup under a strategy: also one rank file per replica (xentdbg.trace.ranks)

    def check(self) -> None:
        check_phases(self.phases)
        if self.compression not in COMPRESSIONS:
            raise UsageError(f"--compression {self.compression!r}: choose one of {', '.join(COMPRESSIONS)}.")
        if self.every < 1:
            raise UsageError(f"--every {self.every} must be at least 1.")


@dataclass
class TraceSummary:
    """What ``record_trace`` wrote. ``bytes``: the reduced trace's size; ``ranks``: the
    rank files (none for a setup without a strategy, or with ``ranks=False``),
    ``rank_bytes`` their sizes together; ``write_seconds`` and ``rank_write_seconds``: the
    time spent writing steps to the reduced trace and to all rank files (slicing included)."""

    path: str
    info: SideInfo
    steps_written: int
    estimate: TraceEstimate
    bytes: int
    ranks: list[str] = field(default_factory=list)
    rank_bytes: int = 0
    write_seconds: float = 0.0
    rank_write_seconds: float = 0.0


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


def rank_files(config: TraceConfig, info: SideInfo) -> list[Path]:
    """The rank files ``record_trace`` writes for this side (:func:`~xentdbg.trace.ranks.rank_path`),
    checked as ``--out`` is (:func:`~xentdbg.replay.preflight.preflight`): each can be written, and
    none is an input of the run (``--init-from``, the setup, ``--data``) or another output;
    a :class:`UsageError` (exit 2) otherwise. None when the side trains on one replica."""
    from xentdbg.replay.preflight import preflight

    n = info.replicas if config.ranks else 1
    if n < 2:
        return []
    paths = [rank_path(config.out, r, n) for r in range(n)]
    preflight(outputs={"--out": config.out, **{f"--out's rank {r} file": str(p) for r, p in enumerate(paths)}},
              inputs={"--init-from": config.init_from}, keep={"the setup": config.setup, "--data": config.data.source})
    return paths


class RankWriters:
    """One :class:`KeptSteps` per replica; :meth:`write` slices a step's record into each."""

    def __init__(self, paths: list[Path], meta: dict, info: SideInfo, initial: tuple[list, list],
                 config: TraceConfig, compression: str | None, data: DataInfo):
        n, run = len(paths), uuid.uuid4().hex
        strategy = info.framework.get("strategy", "unknown")
        self.data, self.seconds = data, 0.0
        self.traces: list[KeptSteps] = []
        try:
            for r, p in enumerate(paths):
                rank = RankMeta(rank=r, world_size=n, strategy=strategy, run=run, reduced=Path(config.out).name)
                writer = TraceWriter(p, {**meta, RANK_KEY: rank.to_dict()}, info, initial, config.phases, compression)
                self.traces.append(KeptSteps(writer, config.every))
        except BaseException:
            self.close()
            raise

    def write(self, record: StepRecord) -> None:
        """Replica r's view of the step into rank file r (a step whose record holds no
        replica r, none is written there)."""
        if not self.traces or not self.traces[0].kept(record.step):
            return
        start = time.perf_counter()
        try:
            sl = self.data.spec.batch_slice(record.step)
            digests = exact_digests(record, self.data.x[sl], self.data.y[sl])
        except (IndexError, ValueError):  # a batch the dataset does not hold as such
            digests = [None] * len(record.replicas)
        for r, trace in enumerate(self.traces):
            if r < len(record.replicas):
                trace.write(rank_record(record, r, digests[r]))
        self.seconds += time.perf_counter() - start

    def close(self) -> None:
        for trace in self.traces:
            trace.close()


def record_trace(config: TraceConfig, on_step: Callable[[int], None] | None = None,
                 on_status: Callable[[str], None] | None = None) -> TraceSummary:
    """Train ``config.setup`` for ``config.steps`` steps in a worker and write the trace
    (and, for a setup under a strategy, its rank files: :mod:`xentdbg.trace.ranks`)."""
    status = on_status or (lambda s: None)
    config.check()
    ref = SetupRef.parse(config.setup)
    ref.check()
    data = load_data(config.data)
    status("starting worker")
    worker = start_worker("A", ref, config.env, config.data, config.steps)
    writer: KeptSteps | None = None
    ranks: RankWriters | None = None
    try:
        status("loading setup")
        info, params, state = wait_ready(worker, load_timeout(config.step_timeout))
        paths = rank_files(config, info)
        estimate = estimate_traces([info], data, config.steps, config.every, config.phases, ranks=config.ranks)
        check_budget(estimate, config.budget, ("--budget", "--only", "--every"), f"trace --out {config.out}",
                     more=f"leave out the {len(paths)} rank files with --no-ranks" if paths else None)
        if config.init_from:
            params, state = _initial_from(config.init_from, info, state)
            worker.send({"type": "init", "params": True, "state": bool(state)}, params + state)
        else:
            worker.send({"type": "init", "params": False, "state": False})
        meta = trace_meta(str(ref), ref.content_hash(), config.env, config.data, info, config.steps, config.every)
        if config.init_from:
            meta["init_from"] = config.init_from
        compression = None if config.compression == "none" else config.compression
        writer = KeptSteps(TraceWriter(config.out, meta, info, (params, state), config.phases, compression),
                           config.every)
        ranks = RankWriters(paths, meta, info, (params, state), config, compression, data)
        seconds = 0.0
        for k in range(config.steps):
            status(f"step {k}")
            worker.step = k
            header, arrays = worker.recv(config.step_timeout)
            record = StepRecord.from_wire(header, arrays)
            start = time.perf_counter()
            writer.write(record)
            seconds += time.perf_counter() - start
            ranks.write(record)
            worker.send({"type": "next"})
            if on_step:
                on_step(k)
        worker.recv(config.step_timeout)  # "done"
        writer.close()
        ranks.close()
        return TraceSummary(config.out, info, writer.written, estimate, Path(config.out).stat().st_size,
                            [str(p) for p in paths], sum(p.stat().st_size for p in paths), seconds, ranks.seconds)
    except BaseException:
        worker.kill()
        raise
    finally:
        if writer is not None:
            writer.close()
        if ranks is not None:
            ranks.close()
        worker.close()
