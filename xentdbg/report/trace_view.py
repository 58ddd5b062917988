"""``xentdbg show``: what a trace holds. Reads each listed tensor in blocks of at most
:data:`BLOCK_BYTES` (its statistics need no more), and each step's loss."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xentdbg.compare.divergence import PHASE_LABELS
from xentdbg.compare.metrics import Summary, summarize
from xentdbg.report.numbers import fmt_number

BLOCKS = "▁▂▃▄▅▆▇█"
BLOCK_BYTES = 64 << 20
MAX_CELL = 300
"""Characters of a metadata value shown (a trace's text comes from elsewhere)."""


def sparkline(values: list[float]) -> str:
    """One character per value, on a log scale when values span decades; '×' marks NaN/Inf."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "×" * len(values)
    log = min(finite) > 0 and max(finite) / min(finite) > 100
    scale = [math.log10(v) if log else v for v in finite]
    lo, hi = min(scale), max(scale)
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("×")
            continue
        x = math.log10(v) if log else v
        out.append(BLOCKS[0] if hi == lo else BLOCKS[round((x - lo) / (hi - lo) * (len(BLOCKS) - 1))])
    return "".join(out) + ("  (log scale)" if log else "")


def blocks(shape: tuple[int, ...], itemsize: int, limit: int = BLOCK_BYTES) -> Iterator[tuple]:
    """Indices that cover an array of ``shape`` in C order, each selecting at most
    ``limit`` bytes (or one element, if larger): slices of the first axis whose trailing
    block fits, for each index of the axes before it."""
    for axis in range(len(shape)):
        inner = math.prod(shape[axis + 1:]) * itemsize
        if inner <= limit:
            step = max(1, limit // max(inner, 1))
            for lead in np.ndindex(*shape[:axis]):
                for start in range(0, shape[axis], step):
                    yield (*lead, slice(start, min(start + step, shape[axis])))
            return
    yield ()


def summary(tensor: Any, limit: int = BLOCK_BYTES) -> Summary:
    """:func:`~xentdbg.compare.metrics.summarize` of a tensor, read block by block when it
    is larger than ``limit`` bytes (min, max, norm and the non-finite count are exact;
    mean and std come from float64 sums)."""
    shape, dtype = tuple(np.shape(tensor)), np.dtype(tensor.dtype)
    if math.prod(shape) * dtype.itemsize <= limit:
        return summarize(np.asarray(tensor))
    count = nonfinite = 0
    total = squares = 0.0
    lo, hi = math.inf, -math.inf
    for index in blocks(shape, dtype.itemsize, limit):
        part = np.asarray(tensor[index])
        vals = part[np.isfinite(part)] if dtype.kind in "fc" else part.ravel()
        nonfinite += part.size - vals.size
        if vals.size:
            vals = vals.astype(np.float64)
            count += vals.size
            total += float(vals.sum())
            squares += float(np.dot(vals, vals))
            lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
    if not count:
        return Summary(shape, str(dtype), math.nan, math.nan, math.nan, math.nan, math.nan, nonfinite)
    mean = total / count
    return Summary(shape, str(dtype), lo, hi, mean, math.sqrt(max(squares / count - mean * mean, 0.0)),
                   math.sqrt(squares), nonfinite)


def _cell(value: object) -> Text:
    """``value`` as plain text (no console markup), cut at :data:`MAX_CELL` characters."""
    text = str(value)
    return Text(text if len(text) <= MAX_CELL else text[:MAX_CELL] + f"… ({len(text)} characters)")


def _rank_rows(trace) -> list[tuple[str, str]]:
    """A rank file's rank (:mod:`xentdbg.trace.ranks`): which replica, the run, the reduced trace."""
    rank = trace.rank
    if rank is None:
        return []
    return [("rank", f"{rank.describe()} ({rank.strategy}), written by process {rank.process} of {rank.processes}: "
                     "this replica's inputs, layer outputs, local loss and gradients, state copy, and the "
                     "synchronized weights"),
            ("run", f"{rank.run}, reduced trace {rank.reduced_path(trace.path)}")]


def render_trace(trace, console: Console, step: int | None = None) -> None:
    meta = trace.meta
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    fw = ", ".join(f"{k} {v}" for k, v in (meta.get("frameworks") or {}).items())
    for key, value in (("trace", str(trace.path)),
                       ("setup", f"{meta.get('setup')} (sha256 {meta.get('setup_sha256')})"),
                       ("kind", trace.info.kind), ("frameworks", fw), ("devices", meta.get("devices")),
                       ("env", " ".join(f"{k}={v}" for k, v in (meta.get("env") or {}).items()) or "-"),
                       ("data", meta.get("data")),
                       ("recorded", f"{meta.get('created')} by xentdbg {meta.get('xentdbg')}"),
                       ("command", meta.get("command")),
                       *_rank_rows(trace),
                       ("steps", f"{len(trace.steps)} complete of {meta.get('steps')} (every {meta.get('every', 1)})")):
        head.add_row(key, _cell(value))
    console.print(head)
    if not trace.steps:
        console.print(Text("The trace holds no complete step.", style="yellow"))
        return
    losses = [trace.loss(k) for k in trace.steps]
    console.print(Text.assemble(("loss  ", "bold"), sparkline(losses),
                                f"  {fmt_number(losses[0])} -> {fmt_number(losses[-1])}"))
    shown = trace.steps[-1] if step is None else step
    if shown not in trace.steps:
        console.print(Text(f"Step {shown} is not in the trace (it holds {trace.steps[0]}..{trace.steps[-1]}).",
                           style="red"))
        return
    record = trace.record(shown)
    table = Table(title=f"Tensors at step {shown}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("phase", "tensor", "shape", "dtype", "norm", "min", "max", "non-finite"):
        table.add_column(col, justify="left" if col in ("phase", "tensor", "dtype") else "right")
    for phase, tensors in record.tensors.items():
        for name, array in tensors:
            s = summary(array)
            table.add_row(PHASE_LABELS.get(phase, phase), _cell(name), str(s.shape), s.dtype, fmt_number(s.norm),
                          fmt_number(s.min), fmt_number(s.max), str(s.nonfinite), style="red" if s.nonfinite else None)
    console.print(table)
    if record.flags:
        console.print(Text("training  ") + _cell(", ".join(f"{k}={v}" for k, v in record.flags.items())))
