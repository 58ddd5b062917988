"""Shared helpers: run the real CLI in a subprocess and read its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASE1 = ROOT / "examples" / "case1_bce"
SETUPS = Path(__file__).resolve().parent / "setups"


def pytest_configure(config) -> None:
    """Python's Ctrl-C handler where the suite was started with SIGINT ignored (below); a
    test process's cap on fork servers (below); and JAX's persistent compilation cache,
    one per test run (both xdist workers and every process the tests start share it):
    the suite starts hundreds of workers that compile
    the same small programs (a setup's initializers, its step), and a JAX worker spends
    half its CPU there (measured: 2.3 s cold, 1.1 s warm, on tests/setups/jax_small.py).
    A cached executable is the compiled one, serialized: results are the same bits
    (the neutrality tests compare plain and captured runs bitwise with the cache on).
    Environment variables JAX reads at import (jax/_src/config.py: compilation_cache_dir,
    persistent_cache_min_compile_time_secs, persistent_cache_min_entry_size_bytes); one
    set by the caller wins."""
    import signal

    # Ctrl-C tests send SIGINT. A shell that starts the suite in the background (``cmd &``)
    # ignores SIGINT in it, Python then installs no KeyboardInterrupt handler, and exec
    # keeps an ignored signal ignored in every process the tests start: restore Python's.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    import tempfile
    import uuid

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    cache = Path(tempfile.gettempdir()) / f"xentdbg-jax-cache-{run}"
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        config._xentdbg_jax_cache = cache  # removed when the run ends (pytest_unconfigure)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    # A test process coordinates hundreds of comparisons over 24-27 start-up contexts (a
    # backend, an environment, a setup's first imports), where a CLI run uses 2. Under a
    # CLI run's cap (8) it closed a server and started it again 11 times in one run
    # (2026-11-25): each a TensorFlow (~3.5 s of CPU) or JAX import. With 32, a suite run
    # started 55 servers instead of 70 (with another fix) and the machine's MemAvailable
    # fell to 15.8 GiB of 23.5 at its lowest, against 18.9 with the cap at 8.
    from xentdbg.replay import forkserver

    forkserver.MAX_SERVERS = 32


def pytest_unconfigure(config) -> None:
    """The run's JAX cache goes when the run ends: by the controlling process (xdist
    workers have ``workerinput``), or by the only one."""
    import shutil

    cache = getattr(config, "_xentdbg_jax_cache", None)
    if cache is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(cache, ignore_errors=True)


def words(text: str) -> str:
    """The words of a rich report, one space apart: rich wraps at the terminal's width and
    a panel's wrapped line carries its ``│`` borders, so a phrase can span lines (and the
    wrap points move with the length of the checkout's path)."""
    return " ".join(text.replace("│", " ").split())


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    report: dict | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, tmp_path: Path, env: dict | None = None, process: bool = False,
            timeout: float = 240) -> CliRun:
    """``xentdbg ARGS`` (``--json FILE`` added to a compare), from the repository root.

    Run by this process (``typer.testing.CliRunner``) unless ``process``: no interpreter
    started per run, and this test process keeps its fork servers
    (:mod:`xentdbg.replay.forkserver`) from one run to the next, so TensorFlow is imported
    once per server, not twice per run. ``env`` is set in ``os.environ`` for the run, as
    ``python -m xentdbg`` would inherit it; only the workers read it (the coordinator has
    read ``TMPDIR`` already: give ``process=True`` for a run that needs its own). An
    exception the CLI did not turn into an exit code (a bug: exit 70 from ``python -m
    xentdbg``) is raised, never read as an exit code.

    ``process=True``: ``python -m xentdbg ARGS`` in a subprocess, stopped after ``timeout``
    seconds, for tests of the process itself (its exit code path, a hang)."""
    report = tmp_path / f"report-{abs(hash(args))}.json"
    extra = ["--json", str(report)] if args and args[0] == "compare" else []
    if process:
        proc = subprocess.run([sys.executable, "-m", "xentdbg", *args, *extra], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "COLUMNS": "160", **(env or {})})
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        import contextlib
        from unittest import mock

        from typer.testing import CliRunner

        from xentdbg.cli import app

        argv = [str(ROOT / "xentdbg" / "__main__.py"), *args, *extra]  # what a trace records as its command
        with contextlib.chdir(ROOT), mock.patch.object(sys, "argv", argv):
            result = CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "160", **(env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    data = json.loads(report.read_text()) if report.exists() else None
    return CliRun(code, stdout, stderr, data)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xentdbg")


EXAMPLES = ROOT / "examples"


def example_pairs() -> dict[tuple[str, str], dict]:
    """Every pair of every ``examples/<topic>/pairs.json``: ``(topic, name) -> entry``."""
    pairs = {}
    for index in sorted(EXAMPLES.glob("*/pairs.json")):
        for name, entry in json.loads(index.read_text()).items():
            pairs[(index.parent.name, name)] = entry
    return pairs


def bench_module(name: str):
    """The script ``bench/NAME.py`` (``name`` may hold a folder: ``"plain/check"``), loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_" + name.replace("/", "_"), ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LONG_PAIRS: dict[str, tuple[str, str, tuple[str, ...]]] = bench_module("fingerprint_agreement").LONG_PAIRS
"""The long pairs ``bench/fingerprint_agreement.py`` runs both ways (relative to ROOT)."""

_SHARED: dict[str, Any] = {}


def shared(key: str, compute: Callable[[], Any], tmp_path: Path) -> Any:
    """``compute()`` once per session, for every test that asks with the same ``key``; the
    result must survive a JSON round trip (it is returned as read back from JSON, within
    one process too, so every caller sees the same thing).

    Under pytest-xdist the result is shared across the worker processes too: the first to
    ask computes it, holding an exclusive ``flock`` on the key's lock file in the session's
    base temporary folder (common to the workers, new each session); the others wait for
    it and read its result. If ``compute`` raises, nothing is stored: the next caller
    computes it again (and fails the same way, with its own message)."""
    if key in _SHARED:
        return _SHARED[key]
    if "PYTEST_XDIST_WORKER" not in os.environ:
        _SHARED[key] = json.loads(json.dumps(compute()))
        return _SHARED[key]
    import fcntl
    import hashlib

    folder = tmp_path.parent.parent / "shared-results"  # pytest-N/, above the workers' popen-gwK/
    folder.mkdir(exist_ok=True)
    name = hashlib.sha1(key.encode()).hexdigest()
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = folder / f"{name}.json"
        if not done.exists():
            text = json.dumps(compute())
            done.write_text(text)
        _SHARED[key] = json.loads(done.read_text())
    return _SHARED[key]


def run_compare(a: str | Path, b: str | Path, *args: str, tmp_path: Path) -> CliRun:
    """``xentdbg compare A B ARGS`` (absolute setup paths), run once per session (also across
    xdist workers: :func:`shared`): the test that checks an example pair's exit code and the
    tests that read its report share it. Only for deterministic runs whose report the tests
    just read."""
    key = (str(a), str(b), *args)
    run = shared(json.dumps(["compare", *key]),
                 lambda: run_cli("compare", *key, tmp_path=tmp_path).__dict__, tmp_path)
    return CliRun(**run)


def run_pair(topic: str, name: str, tmp_path: Path) -> CliRun:
    """:func:`run_compare` on one example pair of ``examples/<topic>/pairs.json``, with its ``args``."""
    entry = example_pairs()[(topic, name)]
    folder = EXAMPLES / topic
    return run_compare(folder / entry["a"], folder / entry["b"], *entry.get("args", []), tmp_path=tmp_path)


workers_of = bench_module("ctrl_c_trials").workers_of
"""Live replay workers whose environment holds ``marker``: the Ctrl-C trials' helper."""
