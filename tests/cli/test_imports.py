"""`import xentdbg` and `xentdbg --help` must not import TensorFlow or JAX (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CHECK = """
import sys
{body}
heavy = sorted(m for m in ("tensorflow", "jax", "keras", "tf_keras") if m in sys.modules)
print(",".join(heavy) or "clean")
"""


def run(body: str) -> str:
    out = subprocess.run([sys.executable, "-c", CHECK.format(body=body)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_import_is_light():
    assert run("import xentdbg, xentdbg.cli, xentdbg.replay.engine, xentdbg.report.console") == "clean"


def test_help_is_light():
    body = ("from typer.testing import CliRunner\nfrom xentdbg.cli import app\n"
            "r = CliRunner().invoke(app, ['compare', '--help'])\nassert r.exit_code == 0 and 'rtol' in r.output")
    assert run(body) == "clean"


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "xentdbg", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "compare" in out.stdout


def test_version_flag_prints_the_installed_version():
    from importlib.metadata import version

    from xentdbg.version import __version__

    out = subprocess.run([sys.executable, "-m", "xentdbg", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"xentdbg {__version__}"
    assert version("xentdbg") == __version__  # pyproject reads it from xentdbg/version.py
