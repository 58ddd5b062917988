"""What decides the exit code: layer outputs locate a divergence, they never make one;
NaN against a number is reported with its origin, never as a difference of 0."""

from __future__ import annotations

import pytest

from conftest import SETUPS, run_cli

DIGITS = str(SETUPS / "jax_digits.py")
ARGS = ("--task", "digits", "--pixels", "unit", "--subset", "400", "--batch-size", "100", "--steps", "4")

pytestmark = pytest.mark.slow


def test_logsoftmax_against_softmax_head_is_not_a_divergence(session_tmp):
    run = run_cli("compare", f"{DIGITS}:log_softmax", f"{DIGITS}:softmax", *ARGS, tmp_path=session_tmp)
    assert run.code == 0, run.output
    report = run.report
    assert report["first_divergence"] is None
    assert any("layer outputs differ from step 0 on, first layers[3]" in n and "not a divergence" in n
               for n in report["notes"]), report["notes"]


def test_nan_injected_at_step_2_is_named_at_its_layer(session_tmp):
    run = run_cli("compare", f"{DIGITS}:log_softmax", f"{DIGITS}:nan_at_step_2", *ARGS, tmp_path=session_tmp)
    assert run.code == 1, run.output
    report = run.report
    first = report["first_divergence"]
    assert (first["step"], first["phase"]) == (2, "loss")
    assert first["metrics"]["max_abs"] == "nan" and first["metrics"]["cosine"] is None  # never 0 and 1.0
    assert "n/a" in run.stdout
    inside = report["first_layer_output_divergence"]
    assert (inside["step"], inside["name_a"]) == (2, "layers[0]:Dense")
    top = report["diagnosis"]["findings"][0]
    assert top["cause"] == "nonfinite-origin", report["diagnosis"]
    assert top["numbers"]["side"] == "B" and top["numbers"]["tensor"] == "layers[0]:Dense"
    assert "layer layers[0]:Dense produced the non-finite values" in " ".join(top["evidence"])
    assert all(f["cause"] != "epsilon" for f in report["diagnosis"]["findings"])
