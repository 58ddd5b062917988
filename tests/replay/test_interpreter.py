"""Workers under another interpreter (``--python-a/--python-b``), without a second virtual
environment: the interpreter checks, the handshake (a real worker of a shadow copy of
xentdbg that speaks another protocol; stand-in interpreters that fail at start), and
the versions a worker reports. No framework is imported: every worker here stops at its
handshake. The two-environment runs are in ``tests/replay/test_two_interpreters.py``."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

from xentdbg.data import DataSpec
from xentdbg.errors import UsageError
from xentdbg.replay import interpreter, wire
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.preflight import check_interpreters
from xentdbg.replay.process import start_worker, wait_ready
from xentdbg.replay.worker import runtime_versions
from xentdbg.report.sides import PYTHON_ENV

SETUP = str(Path(__file__).parents[1] / "setups" / "jax_small.py")


def script(path: Path, body: str) -> str:
    """An executable shell script: a stand-in for an interpreter that misbehaves."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def shadow_package(tmp_path: Path, protocol: int) -> str:
    """A copy of this xentdbg whose wire.py speaks ``protocol``: another xentdbg, honestly
    (its own files, loaded by a worker as it loads any)."""
    folder = tmp_path / "shadow" / "xentdbg"
    shutil.copytree(interpreter.PACKAGE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    wire_py = folder / "replay" / "wire.py"
    text, n = re.subn(r"^PROTOCOL_VERSION = \d+$", f"PROTOCOL_VERSION = {protocol}", wire_py.read_text(),
                      flags=re.M)
    assert n == 1
    wire_py.write_text(text)
    return str(folder)


# -- the check before a run ---------------------------------------------------------------

def test_this_interpreter_passes_as_given():
    assert interpreter.check(sys.executable, "--python-b") == os.path.abspath(sys.executable)


def test_a_venv_link_is_not_followed(tmp_path):
    link = tmp_path / "bin-python"
    link.symlink_to(sys.executable)
    assert interpreter.check(str(link), "--python-b") == str(link)  # a venv is known by the link's place


@pytest.mark.parametrize("make, says", [
    (lambda d: str(d / "missing"), "no such file"),
    (lambda d: str(d), "is a directory"),
    (lambda d: (d / "plain").write_text("x") and str(d / "plain"), "is not executable"),
    (lambda d: "no-such-python-xentdbg", "no such command on PATH"),
    (lambda d: script(d / "liar", "echo hello; exit 4"), "is not a Python 3 interpreter, or failed to start "
                                                         "(exit code 4: hello)"),
    (lambda d: script(d / "old", "echo 'xentdbg-probe {\"version\": [3, 9, 18], \"executable\": \"old\"}'"),
     "is Python 3.9.18; xentdbg's workers need Python 3.11 or newer"),
    (lambda d: script(d / "bare", "echo 'xentdbg-probe {\"version\": [3, 12, 1], \"executable\": \"b\", "
                                  "\"error\": \"ModuleNotFoundError: No module named numpy\"}'"),
     "cannot run xentdbg's worker: ModuleNotFoundError: No module named numpy"),
])
def test_a_bad_interpreter_is_a_usage_error(tmp_path, make, says):
    with pytest.raises(UsageError) as e:
        interpreter.check(make(tmp_path), "--python-b")
    assert says in e.value.message and e.value.message.startswith("--python-b ")
    assert e.value.exit_code == 2 and e.value.hint


def test_the_probe_runs_under_the_sides_env(tmp_path):
    """``--env-b`` applies to the probe as to the worker: a broken PYTHONPATH shows."""
    bad = tmp_path / "numpy"
    bad.mkdir()
    (bad / "__init__.py").write_text("raise ImportError('shadowed numpy')")
    with pytest.raises(UsageError, match="shadowed numpy"):
        interpreter.check(sys.executable, "--python-a", {"PYTHONPATH": str(tmp_path)})


def test_the_probe_sees_another_protocol(tmp_path, monkeypatch):
    monkeypatch.setattr(interpreter, "PACKAGE", shadow_package(tmp_path, 999))
    with pytest.raises(UsageError, match=r"--python-b \S+ speaks wire protocol 999.*speaks protocol "
                                         + str(wire.PROTOCOL_VERSION)):
        interpreter.check(sys.executable, "--python-b")


def test_check_interpreters_gives_each_sides_env_entry():
    got = check_interpreters({"--python-a": (None, {}), "--python-b": (sys.executable, {})})
    assert got == {"--python-a": {}, "--python-b": {PYTHON_ENV: os.path.abspath(sys.executable)}}


# -- the handshake, with real workers ----------------------------------------------------------

def _start(env: dict[str, str]):
    return start_worker("B", SetupRef.parse(SETUP), env, DataSpec(subset=8), 1)


def test_a_worker_says_hello_first_with_this_protocol():
    worker = _start({PYTHON_ENV: sys.executable})
    try:
        hello = worker.handshake(60)
        assert hello["protocol"] == wire.PROTOCOL_VERSION and hello["executable"] == sys.executable
        assert hello["package"] == interpreter.PACKAGE  # it imported this xentdbg
    finally:
        worker.close(grace=0)


def test_a_worker_of_another_protocol_is_refused_before_anything_else(tmp_path, monkeypatch):
    monkeypatch.setattr(interpreter, "PACKAGE", shadow_package(tmp_path, 999))
    worker = _start({})
    try:
        with pytest.raises(UsageError) as e:
            wait_ready(worker, 60)
        assert e.value.exit_code == 2
        assert "Side B's worker speaks wire protocol 999" in e.value.message
        assert str(tmp_path / "shadow" / "xentdbg") in e.value.message  # which xentdbg it ran
        assert worker.proc.poll() is not None  # stopped before it loaded the setup
    finally:
        worker.close(grace=0)
    # this xentdbg's next worker, under the same environment, is not forked from the
    # server that imported the other one (a fork server's key names the folder it runs)
    monkeypatch.undo()
    worker = _start({})
    try:
        assert wait_ready(worker, 60)[0].kind
    finally:
        worker.close(grace=0)


def test_a_worker_that_dies_before_hello_under_another_python(tmp_path):
    """Exit 2 naming what it said, whether it died before the load request was written
    (start_worker raises) or after (the handshake does)."""
    python = script(tmp_path / "python", "echo \"ModuleNotFoundError: No module named 'numpy'\" >&2; exit 1")
    with pytest.raises(UsageError, match=r"Side B's worker under \S+ exited with code 1 before its handshake: "
                                         r"ModuleNotFoundError: No module named 'numpy'\."):
        worker = _start({PYTHON_ENV: python})
        try:
            wait_ready(worker, 60)
        finally:
            worker.close(grace=0)


def test_an_interpreter_that_cannot_be_run(tmp_path):
    with pytest.raises(UsageError, match="Side B: cannot start a worker under .*missing"):
        _start({PYTHON_ENV: str(tmp_path / "missing")})


def test_a_message_that_is_no_hello_is_refused():
    err = interpreter.mismatch("Side A's worker", {})
    assert "sent no protocol version" in err.message and f"speaks protocol {wire.PROTOCOL_VERSION}" in err.message


# -- the versions a worker reports ------------------------------------------------------------

def test_runtime_versions_add_what_the_adapter_did_not_report(monkeypatch):
    import numpy

    monkeypatch.delitem(sys.modules, "flax", raising=False)
    got = runtime_versions({"python": "3.x", "jax": "given"})
    assert got["executable"] == sys.executable
    assert "python" not in got and "jax" not in got  # the adapter's own stay
    assert got["numpy"] == numpy.__version__
    assert "flax" not in got  # not imported: not listed, and not imported to find out
    assert "flax" not in sys.modules
