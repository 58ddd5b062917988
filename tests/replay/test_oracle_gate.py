"""When the float64 oracle runs (xentdbg.replay.oracle), on hand-made steps: no worker is
started here; a step the oracle cannot settle is answered before any would be."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import Pairing, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import CompareConfig
from xentdbg.records import SideInfo, StepRecord, TensorSpec
from xentdbg.replay.oracle import Float64Oracle, worth_checking

RNG = np.random.default_rng(0)
BIG = RNG.standard_normal((8, 4)).astype(np.float32)  # a gradient of size ~1
PAIRING = Pairing(params=[(0, 0), (1, 1)], state=[(0, 0)])


def _record(bias_grad, var):
    return StepRecord(0, {"loss": [("loss", np.float32(1.0))],
                          "gradients": [("dense/kernel", BIG), ("dense/bias", bias_grad)],
                          "state": [("bn/moving_variance", var)]})


def _info(oracle):
    return SideInfo("KerasFit", {}, [TensorSpec.of("dense/kernel", BIG), TensorSpec("dense/bias", (4,), "float32")],
                    [TensorSpec("bn/moving_variance", (4,), "float32")], oracle=list(oracle))


def test_a_gradient_that_cancels_is_worth_a_float64_run_though_far_off_its_own_scale():
    var = np.ones(4, np.float32)
    noise_a = (RNG.standard_normal(4) * 3e-5).astype(np.float32)
    noise_b = (RNG.standard_normal(4) * 3e-5).astype(np.float32)
    view = compare_step(_record(noise_a, var), _record(noise_b, var), PAIRING, Tolerance())
    assert [t.name_a for t in view.divergences] == ["dense/bias"]  # ~1 of its own scale
    assert worth_checking(view) is None  # but ~1e-4 of the step's largest gradient
    big = compare_step(_record(np.ones(4, np.float32), var), _record(np.full(4, 2, np.float32), var), PAIRING,
                       Tolerance())
    assert "beyond rounding" in (worth_checking(big) or "")


def test_a_phase_a_side_cannot_re_run_in_float64_is_answered_without_starting_workers():
    zero = np.zeros(4, np.float32)
    view = compare_step(_record(zero, np.ones(4, np.float32)), _record(zero, np.full(4, 1.01, np.float32)), PAIRING,
                        Tolerance())
    assert [t.phase for t in view.divergences] == ["state"]
    oracle = Float64Oracle(CompareConfig("a.py", "b.py"), (_info(["loss", "gradients", "state"]),
                                                           _info(["loss", "gradients"])))
    view_record = _record(zero, zero)
    check = oracle.check(view, (view_record, view_record), "A", ((), ()), (None, None))
    assert not check.ran and check.unavailable == "side B (KerasFit) re-runs loss, gradients in float64, not state"
    assert oracle._workers is None  # nothing was started
    none = Float64Oracle(CompareConfig("a.py", "b.py"), (_info([]), _info(["loss", "gradients"])))
    assert none.check(view, (view_record, view_record), "A", ((), ()), (None, None)).unavailable == \
        "side A (KerasFit) has no float64 re-run"
