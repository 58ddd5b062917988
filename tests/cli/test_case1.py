"""Acceptance for case 1 (docs/reference-cases.md): JAX vs Keras binary cross-entropy,
raw pixels, 1000 samples, full batch, 10 steps, through the real CLI."""

from __future__ import annotations

import pytest

from conftest import CASE1, run_compare, words

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

KERAS = str(CASE1 / "keras_fit.py")
STEPS = ["--steps", "10"]


@pytest.fixture(scope="module")
def stable_vs_keras(session_tmp):
    return run_compare(str(CASE1 / "jax_stable.py"), KERAS, *STEPS, tmp_path=session_tmp)


def test_stable_jax_vs_keras_diverges_at_step0_loss(stable_vs_keras):
    run = stable_vs_keras
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"]) == (0, "loss")
    # Reference losses at step 0 (docs/reference-cases.md, case 1, measured by hand, TF 2.21 / JAX 0.10.2)
    assert first["summary_a"]["mean"] == pytest.approx(6.4628, abs=1e-4)
    assert first["summary_b"]["mean"] == pytest.approx(39.6471, abs=1e-4)
    per_step = run.report["per_step"]
    assert per_step[1]["loss_a"] == pytest.approx(4.2476, abs=1e-4)
    assert per_step[1]["loss_b"] == pytest.approx(10710.2, rel=1e-5)
    assert per_step[9]["loss_b"] == pytest.approx(0.2940, abs=1e-4)
    # The step-0 gradients of the reference: W1 max abs diff 5.88, W2 71.1.
    grads = {t["name_b"]: t["metrics"] for t in run.report["also_diverged_in_step"] if t["phase"] == "gradients"}
    assert grads["sequential/dense/kernel"]["max_abs"] == pytest.approx(5.88, abs=0.01)
    assert grads["sequential/dense_1/kernel"]["max_abs"] == pytest.approx(71.1, abs=0.1)
    assert grads["sequential/dense/kernel"]["cosine"] == pytest.approx(0.243, abs=0.001)


def test_stable_jax_vs_keras_is_diagnosed_as_logits_vs_clipped_probabilities(stable_vs_keras):
    assert stable_vs_keras.code == 1, stable_vs_keras.output
    findings = stable_vs_keras.report["diagnosis"]["findings"]
    top, eps = findings[0], findings[1]
    assert top["cause"] == "logits-vs-probabilities" and top["numbers"]["prob_side"] == "A"
    # 437 of 1000 sigmoid outputs are exactly 0.0 or 1.0 (docs/reference-cases.md: 43.7%)
    assert top["numbers"]["exact_0_or_1"] == 437
    # recomputed from the logits, A's loss is B's: the gap closes
    assert top["numbers"]["loss_from_logits"] == pytest.approx(39.6471, abs=1e-4)
    # cause 2: the epsilon A clips with, read from its loss: 1e-6 below, float32(0.9999999) above
    assert eps["cause"] == "epsilon"
    assert eps["numbers"]["clip"][0] == 1e-6 and eps["numbers"]["clip"][1] == pytest.approx(1 - 1.1920929e-07)
    out = words(stable_vs_keras.stdout)
    assert "Likely cause: Side B computes the cross-entropy from logits, side A from clipped probabilities" in out
    assert "fix: Compute side A's loss from the logits" in out


def test_terminal_report_states_what_was_compared(stable_vs_keras):
    assert stable_vs_keras.code == 1, stable_vs_keras.output
    out = stable_vs_keras.stdout
    assert "First divergence: step 0 · loss · loss" in out
    assert "JaxLoop" in out and "KerasFit" in out and "tensorflow backend" in out
    assert "max|A-B| <= 1e-06 + 0.001*max(|A|,|B|)" in out
    assert "Per step" in out and "10710.2" in out


def test_naive_jax_vs_keras_is_nonfinite_on_one_side(session_tmp):
    run = run_compare(str(CASE1 / "jax_naive.py"), KERAS, *STEPS, tmp_path=session_tmp)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"]) == (0, "loss")
    assert first["metrics"]["nonfinite_a"] == 1 and first["metrics"]["nonfinite_b"] == 0
    assert "Side A produced NaN/Inf" in run.stdout


def test_exact_logits_jax_matches_keras(session_tmp):
    run = run_compare(str(CASE1 / "jax_logits.py"), KERAS, *STEPS, tmp_path=session_tmp)
    assert run.code == 0, run.output
    assert run.report["first_divergence"] is None
    assert run.report["per_step"][0]["loss_a"] == pytest.approx(39.6471, abs=1e-4)
    assert "No divergence in 10 steps" in run.stdout


def test_keras_tf_backend_vs_jax_backend_diverge_at_step0(session_tmp):
    run = run_compare(KERAS, KERAS, *STEPS, "--env-b", "KERAS_BACKEND=jax", tmp_path=session_tmp)
    assert run.code == 1, run.output
    assert run.report["b"]["framework"]["backend"] == "jax"
    first = run.report["first_divergence"]
    assert first["step"] == 0 and first["phase"] == "loss"
    # Keras on JAX clips the probabilities with Keras' epsilon; on TF it uses the cached logits
    causes = {f["cause"]: f for f in run.report["diagnosis"]["findings"]}
    assert causes["logits-vs-probabilities"]["numbers"]["prob_side"] == "B"
    assert causes["epsilon"]["numbers"]["clip"][0] == 1e-7


def test_keras_fit_vs_itself_is_bitwise_equal(session_tmp):
    run = run_compare(KERAS, KERAS, *STEPS, tmp_path=session_tmp)
    assert run.code == 0, run.output
    assert run.report["all_bitwise_equal"] is True
    assert "Every captured tensor is bitwise equal" in run.stdout
