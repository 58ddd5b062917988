"""The float64 oracle's workers started early (``Float64Oracle.prestart``): at the first
drifting step the engine spawns them without waiting, so they load while the replay goes
on; an unused pair is killed at the end, not given the grace of workers that served."""

from __future__ import annotations

import signal

import pytest

from xentdbg.compare.result import CompareConfig
from xentdbg.data import DataSpec
from xentdbg.replay.oracle import Float64Oracle

from conftest import CASE1

pytestmark = pytest.mark.slow  # spawns two float64 workers


def test_early_workers_are_spawned_once_and_an_unused_pair_ends_with_the_oracle():
    config = CompareConfig(str(CASE1 / "jax_stable.py"), str(CASE1 / "jax_logits.py"),
                           data=DataSpec(subset=100, batch_size=50), steps=2)
    oracle = Float64Oracle(config, ())  # the sides' infos: only a check reads them
    oracle.prestart()
    workers = oracle._workers
    assert workers is not None and [w.side for w in workers] == ["A64", "B64"]
    assert all(w.proc.poll() is None for w in workers)  # spawned, not waited for
    oracle.prestart()
    assert oracle._workers is workers  # once
    oracle.close()
    assert not oracle._ready
    # killed at once: given a grace, a worker still loading would finish and exit by itself (0)
    assert [w.proc.wait(timeout=60) for w in workers] == [-signal.SIGKILL] * 2
