"""The terminal report at 80 and 120 columns, and the per-step window every report shares
(:mod:`xentdbg.report.steps`), on results built in numpy (no framework, no worker)."""

from __future__ import annotations

import io
import re
from functools import cache

import numpy as np
import pytest
from rich.console import Console

from xentdbg.compare.divergence import Pairing, StepComparison, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.records import SideInfo, StepRecord, TensorSpec
from xentdbg.report.console import PER_STEP_COLUMNS, Names, elisions, identifying, render_result
from xentdbg.report.json_report import result_dict
from xentdbg.report.markdown import render_markdown
from xentdbg.report.steps import AROUND, HEAD, TAIL, Gap, shown_rows

KERNEL, BIAS = "sequential/dense_1/kernel", "sequential/dense_1/bias"
OUTPUT = "functional/block_2/dense_3/kernel"
PAIRING = Pairing([(0, 0), (1, 1), (2, 2)], [])
NAMES = (KERNEL, BIAS, OUTPUT)


def _record(step: int, loss: float, scale: float) -> StepRecord:
    tensors = [(name, np.full((3, 2), 0.5, np.float32) * scale) for name in NAMES]
    return StepRecord(step, {"loss": [("loss", np.float32(loss))], "activations": [("dense_1", tensors[0][1])],
                             "gradients": tensors, "weights": tensors})


@cache
def result(steps: int, diverge_at: int | None) -> CompareResult:
    """``steps`` steps of two sides that agree (to float32 rounding) until ``diverge_at``,
    from where B's gradients and weights are twice A's."""
    compared = []
    for k in range(steps):
        bad = diverge_at is not None and k >= diverge_at
        loss = 0.693147 - 1.3e-5 * k
        compared.append(compare_step(_record(k, loss, 1.0), _record(k, loss + 1.2e-7, 2.0 if bad else 1.0000001),
                                     PAIRING, Tolerance(), detail=k == diverge_at))
    info = SideInfo("KerasFit", {"keras": "3", "backend": "tensorflow"},
                    [TensorSpec(n, (3, 2), "float32") for n in NAMES], [])
    return CompareResult(CompareConfig("a.py", "b.py", steps=steps), info, info, compared, [], {})


def render(res: CompareResult, width: int, all_steps: bool = False) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    render_result(res, console, all_steps=all_steps)
    return console.export_text()


def table_lines(text: str, title: str) -> list[str]:
    """The lines of the table titled ``title``, header first, up to the blank line after it."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.strip().startswith(title))
    body = []
    for line in lines[start + 1:]:
        if not line.strip() and body:
            break
        if line.strip():
            body.append(line)
    return body


def shown_steps(rows) -> list[int]:
    return [r.step for r in rows if isinstance(r, StepComparison)]


def test_window_around_the_first_divergence_with_one_summary_row_per_gap():
    res = result(5000, 2500)
    rows = shown_rows(res.steps)
    at = 2500
    assert shown_steps(rows) == [*range(HEAD), *range(at - AROUND, at + AROUND + 1), *range(5000 - TAIL, 5000)]
    gaps = [r for r in rows if isinstance(r, Gap)]
    assert [(g.first, g.last) for g in gaps] == [(HEAD, at - AROUND - 1), (at + AROUND + 1, 5000 - TAIL - 1)]
    assert gaps[0].describe() == f"{at - AROUND - HEAD:,} steps, all within tolerance"
    assert gaps[1].describe().endswith("none within tolerance")
    assert gaps[1].grad_diff.value == pytest.approx(0.5)  # the worst of the column, from a left-out step

    text = render(res, 80)
    per_step = table_lines(text, "Per step")
    assert len(per_step) < 40  # 5,000 steps printed 5,022 lines
    assert "2,494 steps, all within tolerance" in render(res, 120)  # at 80 columns the cell takes two lines
    assert "13 of 5,000 steps shown; --all-steps shows every one" in " ".join(text.split())
    assert len(result_dict(res)["per_step"]) == 5000  # the JSON report keeps every step


def test_no_divergence_shows_the_first_and_last_steps():
    rows = shown_rows(result(50, None).steps)
    assert shown_steps(rows) == [*range(HEAD), *range(50 - TAIL, 50)]
    (gap,) = [r for r in rows if isinstance(r, Gap)]
    assert len(gap.steps) == 50 - HEAD - TAIL and gap.diverged == 0


def test_short_runs_and_all_steps_show_every_step():
    assert shown_steps(shown_rows(result(10, 0).steps)) == list(range(10))  # no gap of fewer than MIN_GAP steps
    assert [type(r) for r in shown_rows(result(11, 0).steps)].count(Gap) == 1
    res = result(50, 20)
    assert shown_steps(shown_rows(res.steps, all_steps=True)) == list(range(50))
    text = render(res, 120, all_steps=True)
    assert "not shown" not in text and "--all-steps" not in text
    assert all(re.search(rf"^\s*{k}\s", text, re.M) for k in (10, 30, 45))


def test_markdown_shows_the_terminal_window():
    res = result(200, 100)
    md = render_markdown(res)
    rows = [line for line in md.split("## Per step", 1)[1].splitlines() if line.startswith("| ")][1:]
    steps = [int(r.split("|")[1]) for r in rows if r.split("|")[1].strip().isdigit()]
    assert steps == shown_steps(shown_rows(res.steps))
    assert "| … |" in md and "94 steps, all within tolerance" in md and "--all-steps shows every one" in md
    full = render_markdown(res, all_steps=True)
    assert sum(1 for line in full.splitlines() if re.match(r"\| \d+ \|", line)) == 200


def test_names_are_cut_from_the_left_never_into_layer_and_variable():
    assert identifying(KERNEL) == "dense_1/kernel" and identifying("loss") == "loss"
    assert elisions(OUTPUT) == [OUTPUT, "…/block_2/dense_3/kernel", "…/dense_3/kernel"]
    cell = Names([KERNEL], "gradients · ")
    assert cell.fit(80) == f"gradients · {KERNEL}"
    assert cell.fit(len("gradients · …/dense_1/kernel")) == "gradients · …/dense_1/kernel"
    assert cell.fit(16) == "gradients ·\n…/dense_1/kernel"
    assert cell.fit(5) == "gradients ·\n…/dense_1/kernel"  # never cut: the column folds it
    assert Names([KERNEL, OUTPUT]).fit(40) == "…/dense_1/kernel | …/dense_3/kernel"
    title = next(line for line in render(result(10, 5), 64).splitlines() if "First divergence" in line)
    assert "First divergence: step 5 · gradients · …/dense_3/kernel ─" in title  # of functional/block_2/…


@pytest.mark.parametrize("width", [80, 120])
def test_readable_at_80_and_120_columns(width):
    text = render(result(5000, 2500), width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    # every header cell of every table fits on one line, all on the header's first line
    tables = {"Per step": PER_STEP_COLUMNS,
              "Also diverged in step 2500": ("phase", "tensor", "max abs diff", "cosine", "non-finite A/B")}
    for title, headers in tables.items():
        header = table_lines(text, title)[0]
        assert all(h in header for h in headers), (title, header)
        assert table_lines(text, title)[1].strip().startswith("─")  # the header is one line
    # each tensor name shown ends with its layer and variable, cut only at a '/' after '…'
    for name in NAMES:
        shown = re.findall(r"[\w…/]*" + re.escape(identifying(name)) + r"\b", text)
        assert shown, name
        for s in shown:
            assert name.endswith(s.lstrip("…")) and (s == name or s.startswith("…/")), s
    assert not re.search(r"\w…|…\w", text)  # nothing else cut mid-word
    per_step = table_lines(text, "Per step")
    assert sum("…/" in line for line in per_step) == (7 if width == 80 else 0)  # 120: the names in full
