"""``--python-a/--python-b`` (and ``trace --python``) on the command line and in the three
reports, in-process without a worker: a bad interpreter is refused before any run (exit
2), and every report header names each side's interpreter and version set."""

from __future__ import annotations

import io
import json
import shlex

import pytest
from rich.console import Console
from typer.testing import CliRunner

from xentdbg.cli import app
from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.records import SideInfo
from xentdbg.report.console import render_result
from xentdbg.report.json_report import result_dict
from xentdbg.report.markdown import render_markdown, reproduce_command
from xentdbg.report.sides import PYTHON_ENV

VENV_B = "/home/me/venvs/tf218/bin/python"


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "1000"})


@pytest.mark.parametrize("command", [["compare", "a.py", "b.py", "--python-b"], ["trace", "a.py", "--out", "t.h5",
                                                                               "--python"]])
def test_a_missing_interpreter_is_exit_2_before_any_run(tmp_path, command):
    setup = tmp_path / "a.py"
    setup.write_text("raise SystemExit('never imported')\n")
    args = [str(setup) if a in ("a.py", "b.py") else str(tmp_path / a) if a == "t.h5" else a for a in command]
    got = run(*args, str(tmp_path / "nope" / "python"))
    assert got.exit_code == 2, got.output
    assert "no such file" in got.output and "Python 3.11 or newer" in got.output
    assert not (tmp_path / "t.h5").exists()


def test_help_documents_the_options():
    compare_help = run("compare", "--help").output
    assert "--python-a" in compare_help and "--python-b" in compare_help
    assert "--python" in run("trace", "--help").output


def _result() -> CompareResult:
    fw = {"jax": "0.10.2", "backend": "cpu", "python": "3.11.7", "platform": "Linux", "devices": "jax:cpu:0",
          "jaxlib": "0.10.2", "optax": "0.2.8", "numpy": "2.4.6"}
    info_a = SideInfo("JaxLoop", {**fw, "executable": "/work/project/.venv/bin/python"}, [], [])
    info_b = SideInfo("JaxLoop", {**fw, "jax": "0.9.0", "jaxlib": "0.9.0", "executable": VENV_B}, [], [])
    cfg = CompareConfig("model.py", "model.py", steps=3, env_b={PYTHON_ENV: VENV_B, "KERAS_BACKEND": "jax"})
    return CompareResult(cfg, info_a, info_b, [], [], {"xentdbg": "0.1.0", "python": "3.11.7"})


def test_console_header_names_each_interpreter_within_80_columns():
    console = Console(width=80, record=True, file=io.StringIO())
    render_result(_result(), console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(line.strip("│ ") for line in text.splitlines())
    assert "JAX 0.9.0" in flat and "(/work/project/.venv/bin/python)" in flat and f"({VENV_B})" in flat
    assert "jaxlib 0.9.0" in flat and "optax 0.2.8" in flat and "numpy 2.4.6" in flat
    assert "KERAS_BACKEND=jax" in flat and PYTHON_ENV not in flat  # the interpreter is shown once, as such


def test_json_sides_carry_interpreter_and_versions():
    d = result_dict(_result())
    assert d["a"]["python"] == "/work/project/.venv/bin/python" and d["b"]["python"] == VENV_B
    assert d["b"]["versions"] == {"python": "3.11.7", "jax": "0.9.0", "jaxlib": "0.9.0", "optax": "0.2.8",
                                  "numpy": "2.4.6"}
    json.dumps(d)


def test_markdown_lists_interpreters_and_reproduces_with_python_b():
    res = _result()
    text = render_markdown(res)
    assert f"| interpreter | `/work/project/.venv/bin/python` | `{VENV_B}` |" in text
    assert "| jaxlib | 0.10.2 | 0.9.0 |" in text
    args = shlex.split(reproduce_command(res))
    assert args[args.index("--python-b") + 1] == VENV_B and "--python-a" not in args
    assert args[args.index("--env-b") + 1] == "KERAS_BACKEND=jax" and not any(PYTHON_ENV in a for a in args)


def test_an_older_result_without_interpreters_renders_as_before():
    info = SideInfo("JaxLoop", {"jax": "0.10.2"}, [], [])
    res = CompareResult(CompareConfig("a.py", "b.py", steps=1), info, info, [], [], {})
    console = Console(width=80, record=True, file=io.StringIO())
    render_result(res, console)
    assert "Python" not in console.export_text()
    assert result_dict(res)["a"]["python"] is None and "interpreter" not in render_markdown(res)

