"""The benchmark's denominators (bench/plain/: the user's own scripts, importing no
xentdbg) train what the setups they stand for train: the same final weights, bitwise, as
the setup's plain run through xentdbg. Here the case-1 scripts; ``bench/bench.py --only
baseline`` checks every script before it measures (``bench/plain/check.py``)."""

from __future__ import annotations

import pytest

from conftest import bench_module

pytestmark = pytest.mark.slow  # 4 framework processes, started at once


def test_case1_plain_scripts_train_what_their_setups_train():
    module = bench_module("plain/check")
    assert module.check(["keras fit", "jax loop stable", "jax loop logits"]) == {
        "keras fit": True, "jax loop stable": True, "jax loop logits": True}
