"""--calibrate: each setup replayed against itself measures its run-to-run noise per phase;
tolerances rise above that noise (never below the defaults) and the report says which apply."""

from __future__ import annotations

import pytest

from conftest import SETUPS, run_cli, words

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

NOISY = f"{SETUPS / 'jax_small.py'}:noisy"
ARGS = ["--subset", "200", "--pixels", "unit", "--steps", "2"]


def test_nondeterministic_setup_diverges_by_default_and_not_once_calibrated(session_tmp):
    plain = run_cli("compare", NOISY, NOISY, *ARGS, tmp_path=session_tmp)
    assert plain.code == 1, plain.output  # 0.5% input jitter per process: beyond rtol 1e-3
    assert plain.report["calibration"] is None and "not calibrated" in plain.stdout
    calibrated = run_cli("compare", NOISY, NOISY, *ARGS, "--calibrate", tmp_path=session_tmp)
    assert calibrated.code == 0, calibrated.output
    cal = calibrated.report["calibration"]
    raised = {p: v for p, v in cal["per_phase"].items() if v["rtol"] > 1e-3}
    assert raised, cal  # the phases the jitter reaches get 10x their measured noise
    assert all(v["rtol"] == 10 * v["noise"] for v in raised.values())
    first = plain.report["first_divergence"]
    assert first["phase"] in raised  # what diverged by default is within the calibrated noise
    assert cal["per_phase"]["inputs"]["rtol"] == 1e-3  # no noise there: the default stays
    assert "calibrated: run-to-run noise" in words(calibrated.stdout)
