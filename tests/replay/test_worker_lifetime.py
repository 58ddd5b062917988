"""A worker lives no longer than its coordinator, and leaves no log file behind, even when
the coordinator is SIGKILLed in the middle of a step; its output still reaches the error
message when it fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xentdbg.replay.worker import PARENT_ENV

from conftest import ROOT, workers_of

SETUPS = Path(__file__).resolve().parent / "lifetime_setups.py"
SMALL_ARGS = ["--subset", "64", "--batch-size", "16"]


def _poll(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.05)


def _env(tmp_path: Path, marker: str) -> dict[str, str]:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "progress").mkdir()
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp"),  # where a worker's log would be
            "XENTDBG_TEST_MARKER": marker, "XENTDBG_TEST_PROGRESS": str(tmp_path / "progress")}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_die_with_a_sigkilled_coordinator_and_leave_no_log(tmp_path):
    marker = f"lifetime-{os.getpid()}-{time.monotonic_ns()}"
    stuck = f"{SETUPS}:stuck_in_step_1"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "xentdbg", "compare", stuck, stuck, "--steps", "5",
                                 *SMALL_ARGS, "--no-float64"], cwd=ROOT, env=_env(tmp_path, marker),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        # both workers inside step 1, which never ends: only the coordinator's death can end them
        _poll(lambda: len(list((tmp_path / "progress").iterdir())) == 2 or proc.poll() is not None, 240,
              "both workers did not reach step 1")
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        assert len(workers_of(marker)) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _poll(lambda: not workers_of(marker), 5, "the workers did not end")
    finally:
        for pid in workers_of(marker):  # on failure, leave nothing running
            os.kill(pid, signal.SIGKILL)
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("xentdbg-")) == []


@pytest.mark.slow
def test_a_dead_workers_output_is_in_the_error_and_its_log_is_gone(tmp_path):
    env = _env(tmp_path, "dies")
    run = subprocess.run([sys.executable, "-m", "xentdbg", "trace", f"{SETUPS}:prints_and_dies",
                          "--out", str(tmp_path / "t.h5"), "--steps", "2", *SMALL_ARGS],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 3, run.stderr
    assert "Side A's worker was killed by signal 9 while loading" in run.stderr
    assert "last words of the setup" in run.stderr  # the log's tail, read through the coordinator's descriptor
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("parent,alive", [("mine", True), ("1", False)])
def test_a_worker_whose_coordinator_is_already_gone_exits_at_once(parent, alive):
    """The coordinator may die before the worker asks for the parent-death signal: the
    worker then sees a parent other than the pid it was given, and exits."""
    code = "from xentdbg.replay.worker import tie_to_parent; tie_to_parent(); print('alive')"
    env = {**os.environ, PARENT_ENV: str(os.getpid()) if parent == "mine" else parent}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and ("alive" in run.stdout) == alive, run.stderr
