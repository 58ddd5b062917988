"""Tolerance metrics, table-driven: zeros, inf, NaN, float16, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xentdbg.compare.metrics import Tolerance, screen_metrics, summarize, tensor_metrics

TOL = Tolerance(rtol=1e-3, atol=1e-6)
inf, nan = np.inf, np.nan

CASES = [
    # name, a, b, within, max_abs, cosine, nonfinite_mismatch
    ("identical", [1.0, 2.0], [1.0, 2.0], True, 0.0, 1.0, 0),
    ("zeros", [0.0, 0.0], [0.0, 0.0], True, 0.0, 1.0, 0),
    ("zero vs tiny within atol", [0.0, 0.0], [5e-7, 0.0], True, 5e-7, 0.0, 0),
    ("zero vs small beyond atol", [0.0, 0.0], [2e-6, 0.0], False, 2e-6, 0.0, 0),
    ("relative to scale", [1000.0, 0.001], [1000.5, 0.0015], True, 0.5, 1.0, 0),
    ("beyond rtol", [1.0, 1.0], [1.0, 1.01], False, 0.01, 2.01 / math.sqrt(2 * (1 + 1.01**2)), 0),
    ("nan both sides", [nan, 1.0], [nan, 1.0], True, 0.0, 1.0, 0),
    ("nan one side", [nan, 1.0], [0.5, 1.0], False, 0.0, 1.0, 1),
    ("inf both same sign", [inf, 1.0], [inf, 1.0], True, 0.0, 1.0, 0),
    ("inf opposite signs", [inf, 1.0], [-inf, 1.0], False, 0.0, 1.0, 1),
    ("inf vs nan", [inf], [nan], False, nan, None, 1),  # nothing finite on both sides: no difference to state
    ("nan loss vs 39.6", [nan], [39.6], False, nan, None, 1),
    ("opposite vectors", [1.0, 2.0], [-1.0, -2.0], False, 4.0, -1.0, 0),
]


@pytest.mark.parametrize("name,a,b,within,max_abs,cosine,mismatch", CASES, ids=[c[0] for c in CASES])
def test_metrics_table(name, a, b, within, max_abs, cosine, mismatch):
    m = tensor_metrics(np.array(a, np.float32), np.array(b, np.float32))
    assert m.within(TOL) is within
    assert m.max_abs == pytest.approx(max_abs, rel=1e-5, abs=1e-9, nan_ok=True)
    assert (m.cosine is None) if cosine is None else m.cosine == pytest.approx(cosine, abs=1e-6)
    assert m.nonfinite_mismatch == mismatch


@pytest.mark.parametrize("name,a,b,within,max_abs,cosine,mismatch", CASES, ids=[c[0] for c in CASES])
def test_screen_gives_the_same_verdict(name, a, b, within, max_abs, cosine, mismatch):
    for dtype in (np.float32, np.float64):
        m = screen_metrics(np.array(a, dtype), np.array(b, dtype))
        full = tensor_metrics(np.array(a, dtype), np.array(b, dtype))
        assert m.within(TOL) is within
        assert m.max_abs == pytest.approx(full.max_abs, nan_ok=True, rel=0, abs=0)
        assert (m.scale, m.nonfinite_mismatch, m.bitwise_equal, m.finite_pairs) == \
            (full.scale, full.nonfinite_mismatch, full.bitwise_equal, full.finite_pairs)


@pytest.mark.parametrize("seed", range(5))
def test_screen_matches_full_metrics_on_random_tensors(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(64, 33)).astype(np.float32) * 10.0 ** rng.integers(-4, 4)
    b = a + rng.normal(size=a.shape).astype(np.float32) * 10.0 ** rng.integers(-9, 0)
    m, full = screen_metrics(a, b), tensor_metrics(a, b)
    assert (m.max_abs, m.scale) == (full.max_abs, full.scale)
    assert m.within(TOL) is full.within(TOL)
    assert m.max_rel is None and m.cosine is None  # only the rule's inputs


def test_screen_bitwise_and_signed_zero():
    a = np.array([0.0, 1.5, -2.0], np.float32)
    same = screen_metrics(a, a.copy())
    assert same.bitwise_equal and (same.max_rel, same.cosine) == (0.0, 1.0)
    signed = screen_metrics(a, np.array([-0.0, 1.5, -2.0], np.float32))
    assert signed.within(TOL) and signed.max_abs == 0.0 and not signed.bitwise_equal


def test_screen_hands_odd_pairs_to_the_full_metrics():
    mixed = screen_metrics(np.array([1.0, 2.0], np.float16), np.array([1.0, 2.0], np.float32))
    assert mixed.within(TOL) and mixed.cosine == pytest.approx(1.0)  # full path: cosine computed
    assert screen_metrics(np.zeros(0, np.float32), np.zeros(0, np.float32)).within(TOL)
    huge = np.array([3e38, -3e38], np.float32)  # A - B overflows to inf: a divergence, never a pass
    assert not screen_metrics(huge, -huge).within(Tolerance(rtol=0.5, atol=0.0))
    assert screen_metrics(np.array([1.0, nan], np.float32), np.array([1.0, nan], np.float32)).within(TOL)


def test_needed_tolerances_are_the_smallest_that_pass():
    m = tensor_metrics(np.array([1.0, 10.0]), np.array([1.5, 10.0]))
    need_rtol = m.needed_rtol(TOL)
    assert need_rtol == pytest.approx((0.5 - 1e-6) / 10.0)
    assert m.within(Tolerance(rtol=need_rtol * 1.0001, atol=TOL.atol))
    assert not m.within(Tolerance(rtol=need_rtol * 0.999, atol=TOL.atol))
    need_atol = m.needed_atol(TOL)
    assert m.within(Tolerance(rtol=TOL.rtol, atol=need_atol * 1.0001))
    assert not m.within(Tolerance(rtol=TOL.rtol, atol=need_atol * 0.999))


def test_one_sided_nonfinite_cannot_pass_at_any_tolerance():
    m = tensor_metrics(np.array([nan]), np.array([1.0]))
    assert math.isinf(m.needed_atol(TOL)) and math.isinf(m.needed_rtol(TOL))
    assert not m.within(Tolerance(rtol=1e9, atol=1e9))


def test_float16_and_mixed_dtypes():
    a = np.array([1.0, 2.0], np.float16)
    b = np.array([1.0, 2.0], np.float32)
    m = tensor_metrics(a, b)
    assert m.within(TOL) and not m.bitwise_equal  # same values, different dtypes
    m16 = tensor_metrics(np.array([1.0, 65504.0], np.float16), np.array([1.0, inf], np.float16))
    assert m16.nonfinite_mismatch == 1 and not m16.within(TOL)


def test_shape_mismatch_never_passes():
    m = tensor_metrics(np.zeros((2, 3)), np.zeros((3, 2)))
    assert not m.same_shape and not m.within(Tolerance(rtol=1.0, atol=1.0))


def test_bitwise_equal_flag():
    a = np.arange(5, dtype=np.float32)
    assert tensor_metrics(a, a.copy()).bitwise_equal
    assert not tensor_metrics(a, a + np.float32(1e-7)).bitwise_equal


def test_summary_ignores_nonfinite_values():
    s = summarize(np.array([1.0, nan, 3.0, inf], np.float32))
    assert (s.min, s.max, s.nonfinite) == (1.0, 3.0, 2)
    assert summarize(np.array(2.5)).shape == ()


def test_nonfinite_elements_are_left_out_and_the_metrics_say_so():
    """783,216 of 784,000 gradient elements NaN on one side: the differences cover the other
    784, and they are reported as covering 784 of 784,000, not as a cosine over everything."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=784_000).astype(np.float32)
    b = a.copy()
    b[784:] = np.nan
    b[:784] *= 1.5
    m = tensor_metrics(a, b)
    assert (m.finite_pairs, m.size, m.partial) == (784, 784_000, True)
    assert m.nonfinite_mismatch == 783_216 and not m.within(TOL)
    assert m.cosine == pytest.approx(1.0, abs=1e-6)  # over the finite pairs: the same direction
    assert m.max_abs == pytest.approx(float(np.max(np.abs(a[:784] * 0.5))), rel=1e-6)


def test_nan_against_a_number_is_reported_as_not_applicable():
    from xentdbg.report.numbers import coverage, fmt_cosine, fmt_difference

    m = tensor_metrics(np.array(np.nan, np.float32), np.array(39.6, np.float32))
    assert fmt_difference(m.max_abs, m.finite_pairs, m.nonfinite_mismatch) == "n/a"
    assert fmt_cosine(m.cosine) == "n/a"
    assert coverage(m.finite_pairs, m.size) == "none of 1 elements is finite on both sides"


def test_screen_reuses_its_scratch_without_mixing_pairs():
    """The screen writes A - B into one reused buffer: a large pair, then a smaller one of
    another shape, then a 0-d one give what the full metrics give for each, and the
    inputs are left as they were."""
    rng = np.random.default_rng(3)
    pairs = [(rng.normal(size=(300, 40)), 0.5), (rng.normal(size=(7,)), 2.0), (np.array(1.25), -1.0)]
    for x, shift in pairs:
        a = x.astype(np.float32)
        b = (x + shift * rng.normal(size=x.shape)).astype(np.float32)
        kept = a.copy(), b.copy()
        m, full = screen_metrics(a, b), tensor_metrics(a, b)
        assert (m.max_abs, m.scale) == (full.max_abs, full.scale)
        assert a.tobytes() == kept[0].tobytes() and b.tobytes() == kept[1].tobytes()
