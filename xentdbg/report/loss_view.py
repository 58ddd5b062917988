"""The terminal report of ``xentdbg loss``: one row per implementation, what is identical,
why they differ (the findings), the notes on the inputs and the exact calls. Rich only:
no TensorFlow, no JAX."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xentdbg.losses import IMPLEMENTATIONS, LossReport
from xentdbg.losses.findings import close


def render_loss(report: LossReport, console: Console) -> None:
    """The table of implementations, what is identical, why they differ, the notes and the exact calls."""
    inputs = report.inputs
    console.print(Text.assemble((report.loss, "bold"), f" on {'logits' if report.from_logits else 'probabilities'}"
                                f" · y_true {_shape(inputs.y_true)} · y_pred {_shape(inputs.y_pred)}"))
    ref = next((r for r in report.results if r.ok and r.key == "reference"), None)
    cells = []
    for r in report.results:
        if not r.ok:
            cells.append((Text(r.label), Text(r.status, style="red" if r.status == "error" else "dim"), Text(), Text()))
            continue
        against = ref if ref is not None and r.key != "reference" else None
        cells.append((Text(r.label), _values(np.float64(r.reduced), against and np.float64(against.reduced), True),
                      _values(r.per_sample, against and against.per_sample),
                      _values(r.gradient, against and against.gradient)))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for n, title in enumerate(("library", "loss", "per sample", "∂ loss / ∂ y_pred")):
        # The gradient column wraps first: the loss and per-sample values stay on one line when they can.
        widest = max(len(row[n]) for row in cells)
        table.add_column(title, overflow="fold", min_width=None if n == 3 else min(widest, 30))
    for row in cells:
        table.add_row(*row)
    console.print(table)
    for r in report.results:
        if not r.ok:
            console.print(Text(f"{r.label}: {r.message}", style="red" if r.status == "error" else "dim"))
    compared = ref is not None and any(r.ok and r.key != "reference" for r in report.results)
    legend = "yellow: differs from the float64 reference by more than 1e-05 relative · red: nan or inf"
    console.print(Text(legend if compared else "red: nan or inf", style="dim"))
    for group in report.identical:
        console.print(Text("identical values: " + " = ".join(IMPLEMENTATIONS[k].label for k in group), style="dim"))
    if report.findings:
        console.print()
        console.rule("why they differ", align="left", style="dim")
    for n, f in enumerate(report.findings, 1):
        head = Text(f"{n}. {f.title}", style="bold")
        if not f.verified:
            head.append("  (not verified against the library output)", style="yellow")
        console.print(head)
        body = Table.grid(padding=(0, 1))
        body.add_column(width=4, justify="right")
        body.add_column()
        for line in f.evidence:
            body.add_row("•", Text(line))
        if f.source:
            body.add_row("", Text(f"source: {f.source}", style="dim"))
        console.print(body)
    for note in inputs.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    console.print()
    calls = Table.grid(padding=(0, 2))
    for r in report.results:
        if r.ok:
            calls.add_row(r.label, Text(f"{r.call}  ({r.version}, {r.dtype})", style="dim"))
    console.print(calls)
    if report.failed:
        console.print(Text(f"exit 3: {', '.join(r.label for r in report.failed)} failed", style="bold red"))


def _shape(a: np.ndarray) -> str:
    return "(" + ", ".join(str(d) for d in a.shape) + ("," if a.ndim == 1 else "") + ")"


def _values(values, against, scalar: bool = False, limit: int = 8) -> Text:
    """``values`` as text: yellow where they differ from ``against``, red where non-finite."""
    a = np.asarray(values)
    differs = ~close(a, against) if against is not None else np.zeros(a.shape, dtype=bool)
    if scalar or a.ndim == 0:
        return _number(float(a), bool(differs), repr(float(a)) if scalar else _short(a[()]))
    text = Text()
    rows = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
    flags = differs.reshape(rows.shape)
    text.append("[" * min(a.ndim, 2))
    shown = 0
    for i, (row, flag) in enumerate(zip(rows, flags, strict=True)):
        if i:
            text.append("], [" if a.ndim > 1 else ", ")
        for j, (v, d) in enumerate(zip(row, flag, strict=True)):
            if shown == limit:
                text.append(", …" if j else "…")
                text.append("]" * min(a.ndim, 2))
                return text
            text.append(", " if j else "")
            text.append_text(_number(v, bool(d), _short(v)))
            shown += 1
    text.append("]" * min(a.ndim, 2))
    return text


def _short(v) -> str:
    """float32: the shortest text that reads back the same value; float64: 9 significant digits."""
    text = str(v) if np.asarray(v).dtype == np.float32 else f"{float(v):.9g}"
    return text[:-2] if text.endswith(".0") else text


def _number(v, differs: bool, shown: str) -> Text:
    if not np.isfinite(v):
        return Text(shown, style="bold red")
    return Text(shown, style="bold yellow" if differs else "")
