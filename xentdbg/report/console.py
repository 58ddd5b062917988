"""The terminal report of a comparison (rich), and how errors are shown."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from rich import box
from rich.cells import cell_len
from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from xentdbg.compare.divergence import PHASE_LABELS, TensorComparison
from xentdbg.compare.metrics import Summary, Tolerance
from xentdbg.data import BUNDLED
from xentdbg.errors import ParameterMismatch, SetupFailed, XentdbgError
from xentdbg.records import CaptureMode, effective_training
from xentdbg.report import sides
from xentdbg.report.data_order import data_order
from xentdbg.report.numbers import coverage, fmt_cosine, fmt_difference, fmt_number
from xentdbg.report.steps import Gap, shown_line, shown_rows

MAX_OTHER = 12


def identifying(name: str) -> str:
    """The part of a tensor name a report never cuts: its layer and variable, the last two
    ``/``-separated parts (``dense_1/kernel`` of ``sequential/dense_1/kernel``)."""
    return "/".join(name.split("/")[-2:])


def elisions(name: str) -> list[str]:
    """``name`` and its shorter forms, longest first: leading path parts replaced by '…',
    down to '…/' and :func:`identifying` (``sequential/dense_1/kernel``, ``…/dense_1/kernel``)."""
    parts = name.split("/")
    return [name] + ["…/" + "/".join(parts[k:]) for k in range(1, len(parts) - 1)]


class Names:
    """A cell of tensor names, after an optional ``prefix`` (a phase): as long as its column
    allows, each name shortened from the left (:func:`elisions`) but never into the layer
    and variable; where even that does not fit, the prefix and each name take a line."""

    def __init__(self, names: Sequence[str], prefix: str = "", style: str | None = None):
        self.names, self.prefix, self.style = list(names), prefix, style

    def _line(self, level: int) -> str:
        shortened = [forms[min(level, len(forms) - 1)] for forms in map(elisions, self.names)]
        return self.prefix + " | ".join(shortened)

    def fit(self, width: int) -> str:
        """The text of the cell in ``width`` columns (lines separated by newlines)."""
        levels = max(len(elisions(n)) for n in self.names) if self.names else 1
        for level in range(levels):
            if cell_len(self._line(level)) <= width:
                return self._line(level)
        shortest = [elisions(n)[-1] for n in self.names]
        return "\n".join(([self.prefix.rstrip()] if self.prefix else []) + shortest)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        least = max(cell_len(line) for line in self.fit(0).splitlines())
        return Measurement(least, max(least, cell_len(self._line(0))))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        yield Text(self.fit(options.max_width), style=self.style or "", overflow="fold")


def _side_line(label: str, path: str, info, env: dict) -> Text:
    fw = info.framework
    ran = sides.ran_with(fw)
    parts = [info.kind]
    if "keras" in ran:
        parts.append(f"Keras {fw['keras']} ({fw.get('backend')} backend)")
    if "tf_keras" in ran:  # the Keras adapters' Keras 2; LegacyKerasFunction's graph mode
        mode = "graph mode" if "graph" in str(fw.get("backend", "")) else f"{fw.get('backend')} backend"
        parts.append(f"Keras 2 (tf_keras {fw['tf_keras']}, {mode})")
    if "tensorflow" in ran:
        parts.append(f"TensorFlow {fw['tensorflow']}")
    if "jax" in ran:
        parts.append(f"JAX {fw['jax']}" + (f" on {fw['backend']}" if "keras" not in ran and fw.get("backend") else ""))
    if "flax" in ran:
        parts.append(f"Flax {fw['flax']}")
    replicas = sides.parallel(fw)
    if replicas:
        parts.append(replicas)
    overrides = sides.env_overrides(env)
    if overrides:
        parts.append(" ".join(f"{k}={v}" for k, v in overrides.items()))
    t = Text.assemble((f"{label} ", "bold"), (path, "cyan"), "  ", " · ".join(parts))
    runtime = _runtime_line(fw, env)
    if runtime:
        t.append("\n  ")
        t.append(runtime, style="dim")
    return t


def _runtime_line(fw: dict, env: dict) -> str:
    """The side's interpreter and the versions its first line does not show
    (``Python 3.11.7 (/venv/bin/python) · numpy 2.4.6 · jaxlib 0.10.2``): with
    ``--python-a/--python-b`` what tells the two sides' environments apart."""
    shown = tuple(k for k in _SIDE_LINE_KEYS if k in sides.ran_with(fw))
    versions = sides.version_text(fw, ("python", *shown))
    executable = sides.interpreter(fw, env)
    python = " ".join(p for p in (f"Python {fw['python']}" if fw.get("python") else "",
                                  f"({executable})" if executable else "") if p)
    return " · ".join(p for p in (python, versions) if p)


_SIDE_LINE_KEYS = ("keras", "tf_keras", "tensorflow", "jax", "flax")
"""The libraries a side's first header line names (with the adapter's backend)."""


def _data_line(cfg) -> str:
    d = cfg.data
    src = "bundled MNIST (5000 samples)" if d.source == BUNDLED else d.source
    return (f"{src}, first {d.subset}, task {d.task}, pixels {d.pixels}, batch {d.batch_size} "
            f"({d.steps_per_epoch} per epoch), {cfg.steps} steps")


def _init_line(init: str) -> str:
    return {"a": "B starts from A's initial weights", "b": "A starts from B's initial weights",
            "own": "each side starts from its own initial weights",
            "traces": "as recorded in each trace"}.get(init, init)


def _summary_rows(a: Summary, b: Summary) -> Table:
    t = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    t.add_column("")
    t.add_column("A", justify="right")
    t.add_column("B", justify="right")
    if a.shape == () and b.shape == ():
        t.add_row("value", fmt_number(a.mean if not a.nonfinite else math.nan),
                  fmt_number(b.mean if not b.nonfinite else math.nan))
    else:
        t.add_row("shape", str(a.shape), str(b.shape))
        for key in ("min", "max", "mean", "std", "norm"):
            t.add_row(key, fmt_number(getattr(a, key)), fmt_number(getattr(b, key)))
    t.add_row("dtype", a.dtype, b.dtype)
    t.add_row("non-finite", str(a.nonfinite), str(b.nonfinite))
    return t


def _metrics_rows(t: TensorComparison, tol: Tolerance) -> Table:
    m = t.metrics
    tab = Table(box=box.SIMPLE, show_header=False, show_edge=False, pad_edge=False)
    tab.add_column(style="bold", no_wrap=True)
    tab.add_column(justify="right", no_wrap=True)
    if m is None:  # compared by fingerprints only
        tab.add_row("compared", t.note or "by fingerprint")
        return tab
    if not m.same_shape:
        tab.add_row("shapes", "differ")
        return tab
    tab.add_row("max abs diff", fmt_difference(m.max_abs, m.finite_pairs, m.nonfinite_mismatch))
    tab.add_row("max rel diff", fmt_difference(m.max_rel, m.finite_pairs, m.nonfinite_mismatch))
    tab.add_row("cosine similarity", fmt_cosine(m.cosine))
    tab.add_row("non-finite A / B", f"{m.nonfinite_a} / {m.nonfinite_b}")
    if m.partial:
        tab.add_row("compared over", coverage(m.finite_pairs, m.size))
    tab.add_row(f"passes with atol (rtol={tol.rtol:g})", f">= {fmt_number(m.needed_atol(tol))}")
    tab.add_row(f"passes with rtol (atol={tol.atol:g})", f">= {fmt_number(m.needed_rtol(tol))}")
    return tab


def _flag(value: object) -> str:
    """A training value as a layer received it, and as it acts on it when that differs."""
    return f"{effective_training(value)} (None)" if value is None else str(value)


def _hint(t: TensorComparison, kinds: dict[str, str]) -> str | None:
    """What the first divergence usually means; the diagnosis command will say more."""
    if t.phase == "flags":
        off, value = ("A", t.value_a) if not t.value_a else ("B", t.value_b)
        layer = t.name_a if off == "A" else t.name_b
        if kinds[off] == "LegacyKerasFunction":
            return (f"Side {off}'s {layer} ran with the learning phase False: add "
                    f"xentdbg.legacy_learning_phase() to the K.function inputs and feed True.")
        how = "was called without training=True (it received None)" if value is None else f"received training={value}"
        return f"Side {off}'s {layer} {how}, so it ran in inference mode: call the model with training=True."
    if t.phase == "inputs":
        return ("The two sides trained on different batches: model.fit shuffles unless shuffle=False; "
                "check the data preprocessing on both sides.")
    if t.metrics is not None and t.metrics.nonfinite_mismatch:
        side = "A" if t.metrics.nonfinite_a > t.metrics.nonfinite_b else "B"
        return f"Side {side} produced NaN/Inf here first (the other side is finite at these positions)."
    return None


def _divergence_title(t: TensorComparison, width: int) -> str:
    """``First divergence: step 3 · gradients · sequential/dense_1/kernel``, its names
    shortened from the left (:class:`Names`) to fit a panel ``width`` columns wide."""
    head = f"First divergence: step {t.step} · {PHASE_LABELS.get(t.phase, t.phase)} · "
    names = Names([t.name_a] if t.name_a == t.name_b else [t.name_a, t.name_b])
    return head + names.fit(width - 6 - cell_len(head)).replace("\n", " | ")


def first_divergence(t: TensorComparison, tol: Tolerance, kinds: dict[str, str], width: int = 200) -> Panel:
    parts: list = []
    if t.phase == "flags":
        parts.append(Text(f"training A={_flag(t.value_a)}, B={_flag(t.value_b)}"))
    else:
        if t.phase == "inputs":
            parts.append(Text(f"batch digest A {str(t.value_a)[:12]}…, B {str(t.value_b)[:12]}…"))
        # side by side where they fit, else one under the other (80 columns)
        summaries = [_summary_rows(t.summary_a, t.summary_b)] if t.summary_a and t.summary_b else []
        parts.append(Columns([_metrics_rows(t, tol), *summaries], padding=(0, 4)))
    hint = _hint(t, kinds)
    if hint:
        parts.append(Text("hint: " + hint, style="yellow"))
    return Panel(Group(*parts), title=Text(_divergence_title(t, width), style="bold red"),
                 title_align="left", border_style="red")


def diagnosis_panel(diagnosis, after_alignment: bool = False) -> Panel:
    """The likely cause with its evidence and fix, then other causes that fit.
    ``after_alignment``: the first finding is the data order, and the next one the likely
    cause of the divergence that remains after alignment (:func:`xentdbg.diagnose.build.diagnose_step`)."""
    parts: list = []
    for k, f in enumerate(diagnosis.findings):
        head = "Likely cause: " if k == 0 else "Also fits: "
        if after_alignment and k == 1:
            head = "After alignment, likely cause: "
        parts.append(Text.assemble((head, "bold"), (f.title, "bold yellow" if k == 0 else "yellow")))
        for e in f.evidence:
            parts.append(Text(f"  • {e}"))
        parts.append(Text.assemble(("  fix: ", "bold green"), f.fix))
    for line in diagnosis.unexplained:  # no probe fits (after alignment, when a data finding comes first)
        parts.append(Text(line))
    for e in diagnosis.errors:
        parts.append(Text(f"probe error (a bug in xentdbg, please report): {e}", style="dim"))
    return Panel(Group(*parts), title=Text("Diagnosis", style="bold"), title_align="left", border_style="yellow")


def data_order_panel(result) -> Panel | None:
    """The data order (:func:`xentdbg.report.data_order.data_order`), when a batch differed."""
    account = data_order(result)
    if account is None:
        return None
    return Panel(Group(*(Text(line) for line in account["lines"])), title=Text("Data order", style="bold"),
                 title_align="left", border_style="cyan")


def _difference(t: TensorComparison) -> str:
    m = t.metrics
    if m is None:
        return ""
    return (f": max abs diff {fmt_difference(m.max_abs, m.finite_pairs, m.nonfinite_mismatch)}, "
            f"cosine {fmt_cosine(m.cosine)}")


def _others(step, first: TensorComparison) -> Table | None:
    others = [t for t in step.divergences if t is not first]
    if not others:
        return None
    tab = Table(title=f"Also diverged in step {step.step} ({len(others)})", title_justify="left",
                box=box.SIMPLE_HEAD)
    for col in ("phase", "tensor", "max abs diff", "cosine", "non-finite A/B"):
        if col == "tensor":
            tab.add_column(col, min_width=len(col))
        else:
            tab.add_column(col, justify="left" if col == "phase" else "right", no_wrap=True)
    for t in others[:MAX_OTHER]:
        name = Names([t.name_a] if t.name_a == t.name_b else [t.name_a, t.name_b])
        if t.metrics is None:
            tab.add_row(t.phase, name, f"A={_flag(t.value_a)} B={_flag(t.value_b)}", "", "")
        else:
            m = t.metrics
            tab.add_row(t.phase, name, fmt_difference(m.max_abs, m.finite_pairs, m.nonfinite_mismatch),
                        fmt_cosine(m.cosine, 4), f"{m.nonfinite_a}/{m.nonfinite_b}")
    if len(others) > MAX_OTHER:
        tab.add_row("…", f"{len(others) - MAX_OTHER} more (see --json)", "", "", "")
    return tab


PER_STEP_COLUMNS = ("step", "loss A", "loss B", "|loss A - B|", "grad diff", "diverged", "first in step")
"""``grad diff``: the largest max|A-B| over the step's gradients."""


def _first_in_step(s) -> Names | str:
    shown = s.first or (s.flagged if s.drift else None)
    if shown is None:
        return ""
    phase = PHASE_LABELS.get(shown.phase, shown.phase)
    return Names([shown.name_a], f"drift: {phase} · " if s.drift else f"{phase} · ")


def _per_step(result, all_steps: bool = False) -> tuple[Table, str | None]:
    """The per-step table (the rows of :func:`~xentdbg.report.steps.shown_rows`), and the
    line that says which steps it leaves out."""
    tab = Table(title="Per step", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for col in PER_STEP_COLUMNS:
        if col == "first in step":
            tab.add_column(col, min_width=len(col))
        else:  # numbers and headers never wrap: the names column gives way
            tab.add_column(col, justify="right", no_wrap=True)
    # no gradient values, only fingerprints
    fingerprints = result.capture is CaptureMode.FINGERPRINT
    rows = shown_rows(result.steps, all_steps)
    for s in rows:
        if isinstance(s, Gap):
            grad = "-" if fingerprints else fmt_number(s.grad_diff.value)
            tab.add_row("…", "", "", fmt_number(s.loss_diff.value), grad, "", s.describe(), style="dim")
            continue
        style = "red" if s.first else "yellow" if s.drift else None
        grad = "-" if fingerprints else fmt_number(s.max_grad_diff)
        tab.add_row(str(s.step), fmt_number(s.loss_a), fmt_number(s.loss_b), fmt_number(abs(s.loss_a - s.loss_b)),
                    grad, str(len(s.divergences)), _first_in_step(s), style=style)
    line = shown_line(rows, len(result.steps))
    if line is not None:
        line = "… rows: the largest |loss A - B| and grad diff among the steps left out. " + line
    return tab, line


def _flag_lines(result) -> list[Text]:
    """The training value each layer received at step 0, and any later change."""
    if not result.steps:
        return []
    lines = []
    for side in ("a", "b"):
        flags = [getattr(s, f"flags_{side}") for s in result.steps]
        if not flags[0]:
            continue
        text = ", ".join(f"{name}={_flag(v)}" for name, v in flags[0].items())
        changed = next((s.step for s, f in zip(result.steps, flags) if f != flags[0]), None)
        later = f" (changes at step {changed})" if changed is not None else ""
        lines.append(Text(f"training {side.upper()}  {text}{later}"))
    return lines


def _calibration_line(result) -> Text:
    cal = result.calibration
    if cal is None:
        return Text("           defaults, not calibrated (--calibrate measures each setup's run-to-run noise)",
                    style="dim")
    noise = ", ".join(f"{side} " + " ".join(f"{p} {fmt_number(v)}" for p, v in ph.items())
                      for side, ph in cal.noise.items())
    return Text(f"           calibrated: run-to-run noise (max|A-B|/scale) {noise}; "
                f"rtol per phase = max(default, {cal.safety:g} x noise)")


def render_result(result, console: Console, title: str = "xentdbg compare", all_steps: bool = False) -> None:
    """The report; ``all_steps``: every step in the per-step table (else a window, :mod:`xentdbg.report.steps`)."""
    cfg, tol = result.config, result.config.tolerance
    head = Group(
        _side_line("A", cfg.setup_a, result.info_a, cfg.env_a),
        _side_line("B", cfg.setup_b, result.info_b, cfg.env_b),
        Text(f"data  {_data_line(cfg)}"),
        Text(f"init  {_init_line(cfg.init)}"),
        Text(f"tolerance  {tol.describe()} (NaN/Inf on one side only always diverges)"),
        _calibration_line(result),
        *_flag_lines(result),
    )
    console.print(Panel(head, title=title, title_align="left"))
    first = result.first
    if first is None:
        equal = " Every captured tensor is bitwise equal." if result.all_bitwise_equal else ""
        console.print(Text(f"No divergence in {len(result.steps)} steps.{equal}", style="bold green"))
        order = data_order_panel(result)
        if order is not None:
            console.print(order)
    else:
        console.print(first_divergence(first, tol, {"A": result.info_a.kind, "B": result.info_b.kind}, console.width))
        step = next(s for s in result.steps if s.first is first)
        if step.crossfeed is not None:
            console.print(Text(f"verdict from: {step.crossfeed.view}", style="bold"))
            if step.crossfeed.float64 is not None:
                console.print(Text(step.crossfeed.float64.describe()))
        step = step.deciding
        inside = step.first_activation
        if inside is not None:
            console.print(Text(f"Inside step {step.step} the layer outputs part first at {inside.name_a}"
                               f"{_difference(inside)} (layer outputs locate a divergence; they never decide one).",
                               style="bold"))
        others = _others(step, first)
        if others is not None:
            console.print(others)
        order = data_order_panel(result)
        if order is not None:
            console.print(order)
        if result.diagnosis is not None:
            realigned = next(s for s in result.steps if s.first is first).realigned
            console.print(diagnosis_panel(result.diagnosis, realigned is not None and realigned.first is not None))
    if result.drift is not None:
        console.print(Text(result.drift.describe(), style="yellow"))
    table, left_out = _per_step(result, all_steps)
    console.print(table)
    if left_out is not None:
        console.print(Text(left_out, style="dim"))
    for side, step in result.nonfinite_loss_from.items():
        if step is not None:
            console.print(Text(f"side {side}'s loss is non-finite from step {step}", style="bold red"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="dim"))
    console.print(Text(f"exit {result.exit_code}: " + ("divergence found" if first else "no divergence"),
                       style="bold red" if first else "bold green"))


def _param_table(err: ParameterMismatch) -> Table:
    """Both parameter tables side by side, each in its own order; a row whose name a
    problem mentions (unpaired, ambiguous) is marked."""
    tab = Table(title="Parameters, each side in its own order", box=box.SIMPLE_HEAD)
    tab.add_column("#", justify="right")
    tab.add_column(f"{err.labels[0]} name")
    tab.add_column(f"{err.labels[0]} shape")
    tab.add_column(f"{err.labels[1]} name")
    tab.add_column(f"{err.labels[1]} shape")
    tab.add_column("")
    text = " ".join(err.problems)
    for i in range(max(len(err.table_a), len(err.table_b))):
        a = err.table_a[i] if i < len(err.table_a) else None
        b = err.table_b[i] if i < len(err.table_b) else None
        flagged = [t.name for t in (a, b) if t is not None and t.name in text]
        tab.add_row(str(i), a.name if a else "", str(a.shape) if a else "—", b.name if b else "",
                    str(b.shape) if b else "—", Text("see below", "bold red") if flagged else Text(""),
                    style="red" if flagged else None)
    return tab


def render_error(err: XentdbgError, console: Console) -> None:
    label = "setup failed" if isinstance(err, SetupFailed) else "error"
    console.print(Text(f"{label}: {err.message}", style="bold red"))
    if isinstance(err, ParameterMismatch):
        console.print(_param_table(err))
        for p in err.problems:
            console.print(Text(f"  - {p}", style="red"))
    if err.detail:
        title = f"side {err.side}" + (f", step {err.step}" if err.step is not None else "") \
            if isinstance(err, SetupFailed) else None
        console.print(Panel(Text(err.detail.rstrip()), title=title, title_align="left", border_style="dim"))
    if err.hint:
        console.print(Text(f"hint: {err.hint}", style="yellow"))
    console.print(Text(f"exit {err.exit_code}", style="bold"))
