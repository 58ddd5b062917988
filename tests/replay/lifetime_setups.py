"""Setups for ``test_worker_lifetime.py``: a worker stuck in a step, a worker that dies."""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "setups"))

from jax_small import _loop  # noqa: E402


def stuck_in_step_1(data):
    """Runs step 0, then never finishes step 1; entering it, writes a file named by its pid
    into ``$XENTDBG_TEST_PROGRESS``, so the test knows both sides are stuck."""
    calls = {"n": 0}

    def hook():
        calls["n"] += 1
        if calls["n"] == 2:
            Path(os.environ["XENTDBG_TEST_PROGRESS"], str(os.getpid())).write_text("stuck\n")
            time.sleep(600)

    return _loop(data, loss_hook=hook)


def prints_and_dies(data):
    print("last words of the setup", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
