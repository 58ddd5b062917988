"""``xentdbg show``: what a trace holds."""

from __future__ import annotations

import math

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xentdbg.compare.divergence import PHASE_LABELS
from xentdbg.compare.metrics import summarize
from xentdbg.report.numbers import fmt_number

BLOCKS = "▁▂▃▄▅▆▇█"


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
                       ("steps", f"{len(trace.steps)} complete of {meta.get('steps')} (every {meta.get('every', 1)})")):
        head.add_row(key, str(value))
    console.print(head)
    if not trace.steps:
        console.print(Text("The trace holds no complete step.", style="yellow"))
        return
    losses = [float(np.asarray(trace.record(k).tensors["loss"][0][1]).reshape(())) for k in trace.steps]
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
            s = summarize(np.asarray(array))
            table.add_row(PHASE_LABELS.get(phase, phase), name, str(s.shape), s.dtype, fmt_number(s.norm),
                          fmt_number(s.min), fmt_number(s.max), str(s.nonfinite), style="red" if s.nonfinite else None)
    console.print(table)
    if record.flags:
        console.print(Text("training  " + ", ".join(f"{k}={v}" for k, v in record.flags.items())))
