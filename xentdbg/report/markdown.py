"""A self-contained Markdown report to paste into an issue tracker."""

from __future__ import annotations

import shlex

from xentdbg.compare.divergence import PHASE_LABELS
from xentdbg.records import CaptureMode
from xentdbg.report import sides
from xentdbg.report.data_order import data_order
from xentdbg.report.numbers import coverage, fmt_cosine, fmt_difference, fmt_number
from xentdbg.report.steps import Gap, shown_line, shown_rows

MAX_OTHER = 20


def _row(*cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _environment(result) -> list[str]:
    cfg = result.config
    fa, fb = result.info_a.framework, result.info_b.framework
    keys = [k for k in ("keras", "backend", "tensorflow", "tf_keras", "jax", "jaxlib", "flax", "optax", "numpy",
                        "train_step", "jit_compile", "strategy", "replicas", "python", "platform", "devices")
            if k in fa or k in fb]
    lines = ["## Environment", "", _row("", "A", "B"), _row("---", "---", "---"),
             _row("setup", f"`{cfg.setup_a}`", f"`{cfg.setup_b}`"),
             _row("kind", result.info_a.kind, result.info_b.kind)]
    lines += [_row(k, fa.get(k, ""), fb.get(k, "")) for k in keys]
    pythons = sides.interpreter(fa, cfg.env_a), sides.interpreter(fb, cfg.env_b)
    if any(pythons):
        lines.append(_row("interpreter", *(f"`{p}`" if p else "" for p in pythons)))
    lines.append(_row("env overrides",
                      *(" ".join(f"{k}={v}" for k, v in sides.env_overrides(env).items()) or "-"
                        for env in (cfg.env_a, cfg.env_b))))
    lines.append(_row("xentdbg", result.versions.get("xentdbg"), result.versions.get("xentdbg")))
    return lines


def reproduce_command(result) -> str:
    """The ``xentdbg compare`` command line that reproduces ``result``."""
    cfg, d = result.config, result.config.data
    args = ["xentdbg", "compare", cfg.setup_a, cfg.setup_b, "--steps", str(cfg.steps), "--data", d.source,
            "--subset", str(d.subset), "--task", d.task, "--pixels", d.pixels, "--batch-size", str(d.batch_size),
            "--init", cfg.init, "--rtol", f"{cfg.tolerance.rtol:g}", "--atol", f"{cfg.tolerance.atol:g}"]
    for side, env in (("a", cfg.env_a), ("b", cfg.env_b)):
        for k, v in sides.env_overrides(env).items():
            args += [f"--env-{side}", f"{k}={v}"]
        if env.get(sides.PYTHON_ENV):
            args += [f"--python-{side}", env[sides.PYTHON_ENV]]
    if cfg.calibrate:
        args.append("--calibrate")
    if cfg.capture is CaptureMode.FINGERPRINT:
        args.append("--fingerprint")
    return shlex.join(args)


def render_markdown(result, commands: list[str] | None = None, all_steps: bool = False) -> str:
    """The report as Markdown. ``commands`` overrides the reproduction commands (for ``diff``);
    ``all_steps``: every step in the per-step table (else the window the terminal shows,
    :mod:`xentdbg.report.steps`)."""
    cfg, tol, first = result.config, result.config.tolerance, result.first
    verdict = f"**First divergence: {first.label}**" if first else f"**No divergence in {len(result.steps)} steps.**"
    d = cfg.data
    lines = [f"# xentdbg report: {cfg.setup_a} vs {cfg.setup_b}", "", verdict, "",
             f"Data: {'bundled MNIST (5000)' if d.source == 'mnist' else d.source}, first {d.subset}, task {d.task}, "
             f"pixels {d.pixels}, batch {d.batch_size}, {len(result.steps)} steps. "
             f"Tolerance: `{tol.describe()}`; NaN/Inf on one side only always diverges.", ""]
    lines += _environment(result)
    lines += ["", "## Reproduce", "", "```bash", *(commands or [reproduce_command(result)]), "```", ""]
    if first is not None:
        lines += ["## First divergence", "", f"`{first.label}`", ""]
        if first.metrics is None:
            lines += [f"training A={first.value_a}, B={first.value_b}", ""]
        else:
            m, a, b = first.metrics, first.summary_a, first.summary_b
            lines += [_row("metric", "value"), _row("---", "---"),
                      _row("max abs diff", fmt_difference(m.max_abs, m.finite_pairs, m.nonfinite_mismatch)),
                      _row("max rel diff", fmt_difference(m.max_rel, m.finite_pairs, m.nonfinite_mismatch)),
                      _row("cosine similarity", fmt_cosine(m.cosine)),
                      _row("non-finite A / B", f"{m.nonfinite_a} / {m.nonfinite_b}"),
                      *([_row("compared over", coverage(m.finite_pairs, m.size))] if m.partial else []),
                      _row(f"passes with atol (rtol={tol.rtol:g})", f">= {fmt_number(m.needed_atol(tol))}"),
                      _row(f"passes with rtol (atol={tol.atol:g})", f">= {fmt_number(m.needed_rtol(tol))}"), "",
                      _row("", "A", "B"), _row("---", "---", "---"), _row("shape", a.shape, b.shape),
                      _row("dtype", a.dtype, b.dtype)]
            lines += [_row(k, fmt_number(getattr(a, k)), fmt_number(getattr(b, k)))
                      for k in ("min", "max", "mean", "std", "norm")]
            lines += [_row("non-finite", a.nonfinite, b.nonfinite), ""]
        step = next(s for s in result.steps if s.first is first)
        if step.crossfeed is not None:
            lines += [f"Verdict from: {step.crossfeed.view}.", ""]
            if step.crossfeed.float64 is not None:
                lines += [step.crossfeed.float64.describe(), ""]
        step = step.deciding
        inside = step.first_activation
        if inside is not None:
            lines += [f"Inside step {step.step} the layer outputs part first at `{inside.name_a}` (layer outputs "
                      "locate a divergence; they never decide one).", ""]
        others = [t for t in step.divergences if t is not first]
        if others:
            lines += [f"### Also diverged in step {step.step} ({len(others)})", "",
                      _row("phase", "tensor", "max abs diff", "cosine"), _row("---", "---", "---", "---")]
            for t in others[:MAX_OTHER]:
                om = t.metrics
                lines.append(_row(PHASE_LABELS.get(t.phase, t.phase), f"`{t.name_a}`",
                                  fmt_difference(om.max_abs, om.finite_pairs, om.nonfinite_mismatch) if om
                                  else f"A={t.value_a} B={t.value_b}",
                                  fmt_cosine(om.cosine, 4) if om else ""))
            if len(others) > MAX_OTHER:
                lines.append(_row("…", f"{len(others) - MAX_OTHER} more", "", ""))
            lines.append("")
        diagnosis = result.diagnosis
        if diagnosis is not None:
            lines += ["## Diagnosis", ""]
            realigned = next(s for s in result.steps if s.first is first).realigned
            aligned = realigned is not None and realigned.first is not None
            for k, f in enumerate(diagnosis.findings):
                head = ("Likely cause" if k == 0 else "After alignment, likely cause" if aligned and k == 1
                        else "Also fits")
                lines += [f"**{head}: {f.title}**", ""]
                lines += [f"- {e}" for e in f.evidence]
                lines += [f"- **fix:** {f.fix}", ""]
            lines += [f"- {line}" for line in diagnosis.unexplained]
    order = data_order(result)
    if order is not None:
        lines += ["## Data order", "", *[f"- {line}" for line in order["lines"]], ""]
    if result.drift is not None:
        lines += [result.drift.describe(), ""]
    lines += ["## Per step", "", _row("step", "loss A", "loss B", "max grad diff", "diverged", "first in step"),
              _row("---:", "---:", "---:", "---:", "---:", "---")]
    rows = shown_rows(result.steps, all_steps)
    for s in rows:
        if isinstance(s, Gap):
            lines.append(_row("…", "", "", fmt_number(s.grad_diff.value), "",
                              f"{s.describe()} (largest max grad diff among them shown)"))
            continue
        lines.append(_row(s.step, fmt_number(s.loss_a), fmt_number(s.loss_b), fmt_number(s.max_grad_diff),
                          len(s.divergences), s.first.label.split(" · ", 1)[1] if s.first
                          else f"drift: {s.flagged.label.split(' · ', 1)[1]}" if s.drift and s.flagged else ""))
    left_out = shown_line(rows, len(result.steps))
    if left_out is not None:
        lines += ["", left_out]
    for side, step in result.nonfinite_loss_from.items():
        if step is not None:
            lines += ["", f"Side {side}'s loss is non-finite from step {step}."]
    if result.notes:
        lines += ["", *[f"- note: {n}" for n in result.notes]]
    lines += ["", f"Exit code {result.exit_code}."]
    return "\n".join(lines) + "\n"
