"""The README's commands are the ones CI and the tests run."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    test_cmd = next(line for line in README.splitlines()
                    if "pytest -q" in line and line.startswith("python3 -m venv"))
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_main_command_is_the_case1_comparison_tested_in_test_case1():
    main_cmd = next(line for line in README.splitlines()
                    if line.startswith("python3 -m venv") and "xentdbg compare" in line)
    assert main_cmd.endswith("xentdbg compare examples/case1_bce/jax_stable.py examples/case1_bce/keras_fit.py")


@pytest.mark.slow
def test_python_api_snippet_runs():
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "compare(" in b)
    out = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 None"


def test_the_setup_section_quotes_examples_minimal_exactly():
    section = README.split("## Setups: one complete file per kind")[1].split("\n## ")[0]
    quoted = re.findall(r"`examples/minimal/(\w+\.py)`:\n\n```python\n(.*?)```", section, re.S)
    assert {name for name, _ in quoted} == {p.name for p in (ROOT / "examples" / "minimal").glob("*.py")}
    for name, code in quoted:
        assert code == (ROOT / "examples" / "minimal" / name).read_text(), name
