"""`import xentdbg` and `xentdbg --help` must not import TensorFlow or JAX (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CHECK = """
import sys
{body}
heavy = sorted(m for m in {modules!r} if m in sys.modules)
print(",".join(heavy) or "clean")
"""
FRAMEWORKS = ("tensorflow", "jax", "keras", "tf_keras")


def run(body: str, modules: tuple[str, ...] = FRAMEWORKS) -> str:
    """Run ``body`` in a fresh interpreter; which of ``modules`` it loaded, or "clean"."""
    out = subprocess.run([sys.executable, "-c", CHECK.format(body=body, modules=modules)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
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


def test_a_worker_loads_no_comparison_engine():
    """A replay worker (and a fork server) bootstraps the package, then its own module:
    the coordinator's engine, diagnosis, losses and traces stay unloaded in it."""
    coordinators = ("xentdbg.replay.engine", "xentdbg.diagnose", "xentdbg.losses", "xentdbg.trace",
                    "xentdbg.compare.result")
    assert run("import xentdbg, xentdbg.replay.worker", coordinators) == "clean"


def test_public_names_resolve_on_first_use_and_compare_stays_the_function():
    """``xentdbg.compare`` names both a subpackage and the public function: the function
    keeps the name when the subpackage's modules are imported later."""
    code = ("import xentdbg, xentdbg.compare.metrics, xentdbg.compare.result\n"
            "from xentdbg import *\n"
            "import xentdbg.replay.engine as engine\n"
            "assert callable(xentdbg.compare) and compare is xentdbg.compare, xentdbg.compare\n"
            "assert set(xentdbg.__all__) <= set(dir(xentdbg))\n"
            "assert all(getattr(xentdbg, n) is not None for n in xentdbg.__all__)\n"
            "assert xentdbg.CompareConfig is engine.CompareConfig and xentdbg.KerasFit.__module__ == 'xentdbg.setups'\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
