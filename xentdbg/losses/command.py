"""``xentdbg loss``: the typer command and its rich rendering. Imports neither TensorFlow nor JAX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xentdbg.losses.explain import close
from xentdbg.losses.implementations import DEFAULT_TIMEOUT, IMPLEMENTATIONS
from xentdbg.losses.inputs import PRESETS

_VALUE_HELP = ("Inline JSON ('[[0,1],[1,0]]'), FILE.npy, FILE.npz[:KEY], or a preset: "
               + ", ".join(PRESETS) + " (a preset alone supplies both arrays).")


def loss_command(
    name: Annotated[str, typer.Argument(metavar="LOSS", help="binary_crossentropy, categorical_crossentropy or "
                                                             "sparse_categorical_crossentropy (bce, cce, scce).")],
    y_true: Annotated[Optional[str], typer.Option("--y-true", help="Targets. " + _VALUE_HELP)] = None,
    y_pred: Annotated[Optional[str], typer.Option("--y-pred", help="Predictions (probabilities, or logits with "
                                                                   "--from-logits). " + _VALUE_HELP)] = None,
    from_logits: Annotated[bool, typer.Option("--from-logits", help="y_pred holds logits.")] = False,
    only: Annotated[Optional[str], typer.Option("--only", help="Implementations to run, comma-separated: "
                                                + ", ".join(IMPLEMENTATIONS) + ". Defaults to all.")] = None,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds each implementation may take.")] = DEFAULT_TIMEOUT,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Evaluate a cross-entropy in every installed implementation and explain where and why they differ.

    Runs Keras 3 on TensorFlow, Keras 3 on JAX, tf_keras and optax (each in its own process) and a
    float64 textbook reference; shows the loss, per-sample losses and d loss / d y_pred of each.

    Exit codes: 0 evaluated (differences are the expected outcome, not an error), 2 bad input,
    3 an implementation raised, crashed or timed out (its row shows the message).
    """
    from xentdbg.cli import _errors  # here, not at import: cli imports this module
    from xentdbg.losses import evaluate_inputs, parse_implementations
    from xentdbg.losses.inputs import canonical_loss, read_inputs

    with _errors(json_path):
        loss = canonical_loss(name)
        keys = parse_implementations(only)
        inputs = read_inputs(loss, y_true, y_pred, from_logits)
        err = Console(stderr=True)
        with err.status(f"evaluating {loss} in {len(keys)} implementations"):
            report = evaluate_inputs(inputs, keys, timeout)
    render(report, Console())
    if json_path:
        Path(json_path).write_text(json.dumps(report.to_dict(), indent=2))
    raise typer.Exit(report.exit_code)


def render(report, console: Console) -> None:
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
        for line in f.lines:
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
    for i, (row, flag) in enumerate(zip(rows, flags)):
        if i:
            text.append("], [" if a.ndim > 1 else ", ")
        for j, (v, d) in enumerate(zip(row, flag)):
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
