"""The float64 oracle's rule (xentdbg.compare.oracle), on hand-made numbers: rounding
shrinks the gap between the sides by about eps64/eps32 in float64; a real difference keeps it."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.oracle import Float64Check, check_float64
from xentdbg.records import StepRecord

RNG = np.random.default_rng(0)
EXACT = RNG.normal(size=(16, 8)) * 1e-3  # the true gradient, float64
FLAGGED = [("gradients", "w", "w")]


def _record(x: np.ndarray) -> StepRecord:
    return StepRecord(step=3, tensors={"gradients": [("w", x)], "loss": [("loss", np.asarray(0.5, x.dtype))]})


def _check(a32, b32, a64, b64) -> Float64Check:
    return check_float64(FLAGGED, _record(a32), _record(b32), _record(a64), _record(b64), "A")


def test_a_float32_gap_that_vanishes_in_float64_is_rounding():
    # each side rounds the exact value differently (summation order): errors of a few ulps
    a32 = EXACT.astype(np.float32)
    b32 = (EXACT * (1 + 3e-7)).astype(np.float32)
    check = _check(a32, b32, EXACT, EXACT + 1e-19)
    assert check.ran and check.rounding, check.describe()
    assert check.checks[0].ratio < 1e-9
    assert "float32 rounding" in check.describe()


def test_a_gap_that_stays_in_float64_is_real_whatever_its_size():
    # label smoothing of 1e-5: far below float32 tolerance in places, yet a different function
    other = EXACT * (1 + 1e-5)
    check = _check(EXACT.astype(np.float32), other.astype(np.float32), EXACT, other)
    assert check.ran and not check.rounding
    assert check.deciding is not None and check.deciding.ratio > 0.5
    assert "the float64 results differ too" in check.describe()


def test_an_error_both_sides_share_beyond_the_gap_is_not_called_rounding():
    # both float32 results sit far from the exact value, in the same direction: the small gap
    # between them hides an error ten times larger than it
    shifted = EXACT + 1e-4
    check = _check(shifted.astype(np.float32), (shifted + 1e-6).astype(np.float32), EXACT, EXACT)
    assert check.checks[0].same_function and not check.checks[0].within_error
    assert not check.rounding


def test_one_side_losing_precision_is_rounding_and_says_which_side():
    # the 500-step BCE pair at step 425: A's float32 gradient is 2.6% off (cancellation),
    # B's is exact to an ulp; in float64 both agree
    a32 = (EXACT * 1.026).astype(np.float32)
    check = _check(a32, EXACT.astype(np.float32), EXACT, EXACT)
    assert check.rounding
    assert check.checks[0].less_precise == "A"
    assert "side A's float32 formula loses precision" in check.describe()


def test_a_side_that_stays_float32_makes_the_oracle_unavailable_not_a_verdict():
    check = _check(EXACT.astype(np.float32), EXACT.astype(np.float32), EXACT, EXACT.astype(np.float32))
    assert not check.ran and not check.rounding
    assert "float32 with float64 enabled" in (check.unavailable or "")


def test_non_finite_values_and_unre_runnable_phases_make_it_unavailable():
    bad = EXACT.copy()
    bad[0, 0] = np.nan
    assert "not finite" in (_check(EXACT.astype(np.float32), EXACT.astype(np.float32), bad, EXACT).unavailable
                            or "")
    check = check_float64([("updates", "w", "w")], *(_record(EXACT) for _ in range(4)), "B")
    assert not check.ran and "updates" in (check.unavailable or "")


def test_the_verdict_round_trips_to_json_types():
    d = _check(EXACT.astype(np.float32), EXACT.astype(np.float32), EXACT, EXACT).to_dict()
    assert d["ran"] and d["rounding"] and d["checks"][0]["phase"] == "gradients"
    assert isinstance(d["checks"][0]["g32"], float)


def _with_big(x: np.ndarray) -> StepRecord:
    """A step whose gradients hold a large tensor beside the flagged ``w``."""
    big = np.ones((4, 4), x.dtype)
    return StepRecord(step=3, tensors={"gradients": [("big", big), ("w", x)],
                                       "loss": [("loss", np.asarray(0.5, x.dtype))]})


def test_a_tensor_that_cancels_is_rounding_even_when_both_sides_share_its_noise():
    # the bias before a BatchNorm: exactly 0 in float64, float32 noise of 3e-4 on both sides
    # that shares most of its pattern (measured: Keras 2 fused BN against Keras 3, cosine 0.94)
    shared = RNG.normal(size=8) * 3e-4
    a32 = (shared + RNG.normal(size=8) * 2e-5).astype(np.float32)
    b32 = (shared + RNG.normal(size=8) * 2e-5).astype(np.float32)
    zero = np.zeros(8) + 1e-14
    check = check_float64(FLAGGED, _with_big(a32), _with_big(b32), _with_big(zero), _with_big(zero), "A")
    tensor = check.checks[0]
    assert tensor.cancels and tensor.phase_scale == 1.0
    assert tensor.err_a > 4 * tensor.g32  # beyond the ordinary budget: the shared noise
    assert check.rounding, check.describe()
    assert "it cancels" in check.describe()


def test_a_tensor_that_cancels_yet_differs_in_float64_is_real():
    a32 = (RNG.normal(size=8) * 3e-4).astype(np.float32)
    b32 = (a32 + 2e-4).astype(np.float32)
    a64, b64 = np.zeros(8), np.full(8, 2e-4)
    check = check_float64(FLAGGED, _with_big(a32), _with_big(b32), _with_big(a64), _with_big(b64), "A")
    assert check.checks[0].cancels and not check.rounding
