"""One setup, two interpreters: second virtual environments made here, offline.

Each is made with ``python -m venv --system-site-packages --without-pip`` and a ``.pth``
file naming the ``site-packages`` folders on this test's ``sys.path``.
(``--system-site-packages`` from inside a virtual environment gives the *base*
interpreter's site-packages, not this environment's (here the second one then imported
no numpy). A ``.pth`` line that is a path adds it to ``sys.path`` without running the
``.pth`` files there, so an editable xentdbg's import hook does not come along: the
workers import xentdbg from the coordinator's folder anyway.) What the tests show: both
sides run, each under its own interpreter, and the report says which; a trace recorded
under each diffs like any two traces; a worker whose xentdbg speaks another protocol,
under that environment's interpreter, is refused with exit 2; and a second environment
with another numpy version, installed into its own site-packages (ahead of the ``.pth``
folders) from the package index pip is configured with, which must be local: nothing is
downloaded. Where the index offers no other numpy, that test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_interpreter import SETUP, shadow_package  # tests/replay, on the path as pytest puts it
from typer.testing import CliRunner

from xentdbg.cli import app
from xentdbg.replay import interpreter
from xentdbg.report.sides import PYTHON_ENV

pytestmark = pytest.mark.slow

SMALL = ["--steps", "2", "--subset", "32"]


def _second_venv(folder: Path) -> tuple[str, str]:
    """A virtual environment in ``folder`` that sees this test's libraries: its Python and
    its own site-packages folder (first on its ``sys.path``)."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    ask = "import site, sys; print(sys.prefix); print(site.getsitepackages()[0])"
    inside = subprocess.run([str(python), "-c", ask],
                            capture_output=True, text=True, check=True).stdout.split()
    assert inside[0] == str(folder)
    # the folders this test's interpreter imports its libraries from (a .pth there may add more)
    libraries = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    Path(inside[1], "base-venv.pth").write_text("\n".join(libraries) + "\n")
    return str(python), inside[1]


@pytest.fixture(scope="module")
def venv_b(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("venv-b")
    python, _ = _second_venv(folder)
    assert subprocess.run([python, "-c", "import numpy, jax"], cwd=folder).returncode == 0
    return python


OTHER_NUMPY = ("2.3.5", "2.2.6")
"""numpy versions to try for the second environment, newest first (JAX 0.10 and
TensorFlow 2.21 need numpy 2)."""


@pytest.fixture(scope="module")
def venv_numpy(tmp_path_factory) -> tuple[str, str]:
    """A second environment whose numpy is another version: its Python and that version."""
    import numpy

    folder = tmp_path_factory.mktemp("venv-numpy")
    python, site_packages = _second_venv(folder)
    tried = []
    for version in (v for v in OTHER_NUMPY if v != numpy.__version__):
        # this test's pip, with its configured index, into the new environment only
        got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                              "--retries", "0", "--timeout", "5", "--target", site_packages, f"numpy=={version}"],
                             capture_output=True, text=True)
        if got.returncode == 0:
            return python, version
        tried.append(f"numpy=={version}: {(got.stderr.strip().splitlines() or ['?'])[-1]}")
    pytest.skip("no other numpy version installable offline here: " + "; ".join(tried))


def run(*args: str, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)  # not the repository: nothing there on the worker's path
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "1000"})
    finally:
        os.chdir(old)


def test_compare_runs_each_side_under_its_interpreter(tmp_path, venv_b):
    got = run("compare", SETUP, SETUP, *SMALL, "--python-b", venv_b, "--json", "r.json", cwd=tmp_path)
    assert got.exit_code == 0, got.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["a"]["python"] == sys.executable and report["b"]["python"] == venv_b
    assert report["b"]["env"] == {PYTHON_ENV: venv_b}
    assert set(report["b"]["versions"]) >= {"python", "jax", "jaxlib", "optax", "numpy"}
    assert f"({venv_b})" in got.output and f"({sys.executable})" in got.output


def test_trace_under_each_interpreter_then_diff(tmp_path, venv_b):
    for name, extra in (("a.h5", []), ("b.h5", ["--python", venv_b])):
        got = run("trace", SETUP, "--out", name, *SMALL, *extra, cwd=tmp_path)
        assert got.exit_code == 0, got.output
    got = run("diff", "a.h5", "b.h5", "--json", "d.json", cwd=tmp_path)
    assert got.exit_code == 0, got.output
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["a"]["python"] == sys.executable and report["b"]["python"] == venv_b
    assert f"({venv_b})" in got.output


def test_another_protocol_under_the_second_interpreter_is_exit_2(tmp_path, venv_b, monkeypatch):
    """The check before the run sees it; so does the handshake of a worker started anyway."""
    from xentdbg.data import DataSpec
    from xentdbg.errors import UsageError
    from xentdbg.replay.loading import SetupRef
    from xentdbg.replay.process import start_worker, wait_ready

    monkeypatch.setattr(interpreter, "PACKAGE", shadow_package(tmp_path, 999))
    got = run("compare", SETUP, SETUP, *SMALL, "--python-b", venv_b, cwd=tmp_path)
    assert got.exit_code == 2, got.output
    assert f"--python-b {venv_b} speaks wire protocol 999" in got.output
    worker = start_worker("B", SetupRef.parse(SETUP), {PYTHON_ENV: venv_b}, DataSpec(subset=8), 1)
    try:
        with pytest.raises(UsageError, match=r"Side B's worker speaks wire protocol 999 .*executable " + venv_b):
            wait_ready(worker, 60)
    finally:
        worker.close(grace=0)


def test_a_second_environment_with_another_numpy_trains_the_same(tmp_path, venv_numpy):
    """The same JAX setup under numpy 2.4 and under another numpy: each worker imports its
    own interpreter's numpy, the header shows both, and the training agrees."""
    import numpy

    python, version = venv_numpy
    got = run("compare", SETUP, SETUP, *SMALL, "--python-b", python, "--json", "r.json", cwd=tmp_path)
    assert got.exit_code == 0, got.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["a"]["versions"]["numpy"] == numpy.__version__
    assert report["b"]["versions"]["numpy"] == version != numpy.__version__
    assert f"numpy {version}" in got.output and f"numpy {numpy.__version__}" in got.output
