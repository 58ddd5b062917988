"""The fingerprint check is sound: whatever passes full comparison passes its fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.compare.fingerprint import fingerprint, fingerprints_agree
from xentdbg.compare.metrics import Tolerance, tensor_metrics

TOL = Tolerance()


@pytest.mark.parametrize("seed", range(200))
def test_never_flags_a_pair_that_full_comparison_passes(seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(rng.integers(1, 500)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
    noise = rng.choice([0.0, 1e-6, 1e-4, 9e-4, 1e-3, 1e-2])
    b = (a + noise * np.abs(a).max() * rng.uniform(-1, 1, a.shape)).astype(np.float32)
    if tensor_metrics(a, b).within(TOL):
        assert fingerprints_agree(fingerprint(a), fingerprint(b), a.size, TOL)


def test_flags_clear_differences():
    a = np.linspace(-1, 1, 100, dtype=np.float32)
    assert not fingerprints_agree(fingerprint(a), fingerprint(a * 1.1), a.size, TOL)
    assert not fingerprints_agree(fingerprint(a), fingerprint(np.where(a > 0.9, np.nan, a)), a.size, TOL)
    assert fingerprints_agree(fingerprint(a), fingerprint(a.copy()), a.size, TOL)


def test_nonfinite_elements_are_counted_not_summed():
    f = fingerprint(np.array([1.0, np.inf, np.nan, -2.0], np.float32))
    assert f.tolist() == [-1.0, pytest.approx(5 ** 0.5), 2.0, 2.0]
