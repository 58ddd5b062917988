"""Acceptance for cases 2 and 3 (docs/reference-cases.md): training flags, BatchNorm
state and gradients with equal losses, across fit, Keras loops and the legacy K.function path."""

from __future__ import annotations

import pytest

from conftest import ROOT, SETUPS, run_cli, run_compare

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

C2 = ROOT / "examples" / "case2_batchnorm"
C3 = ROOT / "examples" / "case3_tf_function_loss"
FIT = str(C2 / "fit.py")
C2_ARGS = ["--task", "digits", "--pixels", "unit", "--batch-size", "100", "--subset", "300", "--steps", "3"]


def compare(tmp, a, b, *args):
    return run_compare(a, b, *args, tmp_path=tmp)  # shared with tests/cli/test_examples.py


def test_fit_vs_loop_without_training_true_is_a_training_flag_at_batchnorm(session_tmp):
    run = compare(session_tmp, FIT, C2 / "loop_model_call.py", *C2_ARGS)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"], first["name_b"]) == (0, "flags", "batch_normalization")
    assert (first["value_a"], first["value_b"]) == (True, None)
    assert "First divergence: step 0 · training flag · batch_normalization" in run.stdout
    assert "training A=True, B=False" in run.stdout and "without training=True" in run.stdout
    assert "training A  batch_normalization=True" in run.stdout
    findings = run.report["diagnosis"]["findings"]
    assert [f["cause"] for f in findings] == ["training-flag", "batchnorm-not-updated"]
    assert "model(x, training=True)" in findings[0]["fix"]
    # Inference-mode BatchNorm also changes the loss of that step.
    assert run.report["per_step"][0]["loss_a"] != run.report["per_step"][0]["loss_b"]


def test_loop_in_position_a_against_fit(session_tmp):
    run = compare(session_tmp, C2 / "loop_model_call.py", FIT, *C2_ARGS)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["phase"], first["value_a"], first["value_b"]) == ("flags", None, True)


def test_fit_vs_loop_with_training_true_is_bitwise_equal(session_tmp):
    run = compare(session_tmp, FIT, C2 / "loop_training_true.py", *C2_ARGS)
    assert run.code == 0, run.output
    assert run.report["all_bitwise_equal"] is True


def test_fit_vs_legacy_without_learning_phase(session_tmp):
    run = compare(session_tmp, FIT, C2 / "legacy_no_learning_phase.py", *C2_ARGS)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"], first["name_b"]) == (0, "flags", "batch_normalization")
    assert (first["value_a"], first["value_b"]) == (True, False)
    assert "legacy_learning_phase() to the K.function inputs" in run.stdout  # the legacy hint


def test_fit_vs_legacy_without_model_updates_diverges_only_in_batchnorm_state(session_tmp):
    run = compare(session_tmp, FIT, C2 / "legacy_no_updates.py", *C2_ARGS)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"]) == (0, "state")
    assert first["name_b"] == "batch_normalization/moving_mean"
    assert first["summary_b"]["max"] == 0.0  # never moved from its initial zeros
    step0 = [t["phase"] for t in run.report["also_diverged_in_step"]]
    assert "loss" not in step0 and "gradients" not in step0 and "activations" not in step0
    (finding,) = run.report["diagnosis"]["findings"]
    assert finding["cause"] == "batchnorm-not-updated" and finding["numbers"]["side"] == "B"
    assert "model.updates" in finding["fix"]
    assert any("momentum 0.99" in e for e in finding["evidence"])  # fit's update, inferred from the batch mean


def test_fit_vs_legacy_complete_agrees(session_tmp):
    run = compare(session_tmp, FIT, C2 / "legacy_complete.py", *C2_ARGS)
    assert run.code == 0, run.output


def test_raw_pixels_loop_loss_goes_nonfinite_at_step_4(session_tmp):
    args = ["--task", "digits", "--pixels", "raw", "--batch-size", "100", "--subset", "500", "--steps", "5"]
    run = compare(session_tmp, FIT, C2 / "loop_model_call.py", *args)
    assert run.code == 1
    assert run.report["first_divergence"]["phase"] == "flags"
    assert run.report["nonfinite_loss_from"] == {"A": None, "B": 4}  # as in docs/reference-cases.md, case 2
    assert "side B's loss is non-finite from step 4" in run.stdout


def test_case3_tf_function_loss_changes_gradients_not_loss(session_tmp):
    args = ["--task", "digits", "--pixels", "unit", "--batch-size", "256", "--subset", "512", "--steps", "2"]
    run = compare(session_tmp, C3 / "plain.py", C3 / "decorated.py", *args)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"]) == (0, "gradients")
    assert first["name_a"] in ("sequential/dense/kernel", "sequential/dense/bias")
    step0 = run.report["per_step"][0]
    assert step0["loss_a"] == pytest.approx(step0["loss_b"], rel=1e-6)
    (finding,) = run.report["diagnosis"]["findings"]
    assert finding["cause"] == "fused-softmax-xent" and finding["numbers"]["fused_side"] == "A"
    assert finding["numbers"]["residual"] < 1e-5
    # label rows sum to 0.1 for class 0 (examples/case3_tf_function_loss/common.py CLASS_WEIGHTS)
    assert finding["numbers"]["label_sums_by_class"]["0"] == pytest.approx(0.1, rel=1e-4)
    assert finding["numbers"]["classes_not_summing_to_1"] == [0]


def test_case1_keras_loop_and_legacy_match_jax_logits_in_either_position(session_tmp):
    c1 = ROOT / "examples" / "case1_bce"
    run = compare(session_tmp, c1 / "jax_logits.py", c1 / "keras_loop.py", "--steps", "5")
    assert run.code == 0, run.output
    run = compare(session_tmp, c1 / "legacy_function.py", c1 / "jax_logits.py", "--steps", "5")
    assert run.code == 0, run.output
    assert run.report["a"]["kind"] == "LegacyKerasFunction"


def test_legacy_without_tf_keras_names_the_extra(session_tmp):
    run = run_cli("compare", FIT, str(C2 / "legacy_complete.py"), *C2_ARGS, tmp_path=session_tmp,
                  env={"PYTHONPATH": str(SETUPS / "no_tf_keras")})
    assert run.code == 2, run.output
    assert "imports tf_keras, which is not installed" in run.stderr
    assert "pip install 'xentdbg[legacy]'" in run.stderr
