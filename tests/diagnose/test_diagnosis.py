"""Diagnosis of causes 6-9 on examples/causes (one pair per cause, plus a clean pair):
each names the cause with its numbers; the clean pair reports no divergence and no diagnosis."""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli, run_compare

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

CAUSES = ROOT / "examples" / "causes"
OPTS = ["--task", "digits", "--pixels", "unit", "--subset", "300", "--batch-size", "100", "--steps", "3"]  # pairs.json


def _run(tmp, a, b):
    """The pair's run with examples/causes/pairs.json's options (shared with tests/cli/test_examples.py)."""
    run = run_compare(CAUSES / a, CAUSES / b, *OPTS, tmp_path=tmp)
    return run, (run.report or {}).get("diagnosis")


def test_clean_pair_reports_nothing(session_tmp):
    run, diagnosis = _run(session_tmp, "fit_l2.py", "loop_l2.py")
    assert run.code == 0 and diagnosis is None, run.output


def test_cause6_fit_shuffles(session_tmp):
    run, diagnosis = _run(session_tmp, "fit_shuffle.py", "loop.py")
    assert run.code == 1, run.output
    top = diagnosis["findings"][0]
    assert top["cause"] == "different-data" and top["numbers"]["step"] == 0
    assert "shuffle=False" in top["fix"] and "side A" in top["fix"]
    assert any("side B's batch is samples 0..99 in order" in e for e in top["evidence"])


def test_cause6b_rescaled_inside_the_step(session_tmp):
    run, diagnosis = _run(session_tmp, "fit.py", "loop_rescale.py")
    assert run.code == 1, run.output  # examples/causes/README.md: exit 1, step 0 · loss, parts at dense
    first, inside = run.report["first_divergence"], run.report["first_layer_output_divergence"]
    assert (first["step"], first["phase"]) == (0, "loss")  # layer outputs locate, the loss decides
    assert (inside["step"], inside["phase"], inside["name_a"]) == (0, "activations", "dense")
    top = diagnosis["findings"][0]
    assert top["cause"] == "different-data" and top["numbers"]["factor"] == pytest.approx(1 / 255, rel=1e-4)


def test_cause6c_a_rescaling_layer_on_one_side_is_aligned_around_and_named(session_tmp):
    # B's model has an extra Rescaling(1/255) layer: the layer outputs align around it (it is
    # listed unpaired) and the first aligned layer, dense, shows the 1/255 factor
    run, diagnosis = _run(session_tmp, "fit.py", "fit_rescaling.py")
    assert run.code == 1, run.output
    inside = run.report["first_layer_output_divergence"]
    assert (inside["step"], inside["name_a"], inside["name_b"]) == (0, "dense", "dense")
    assert any("unpaired" in n and "B rescaling" in n for n in run.report["notes"]), run.report["notes"]
    top = diagnosis["findings"][0]
    assert top["cause"] == "different-data" and top["numbers"]["factor"] == pytest.approx(1 / 255, rel=1e-4)


def test_cause11_label_smoothing_on_one_side_recovers_the_factor(session_tmp):
    run, diagnosis = _run(session_tmp, "fit.py", "fit_smoothing.py")
    assert run.code == 1, run.output
    assert (run.report["first_divergence"]["step"], run.report["first_divergence"]["phase"]) == (0, "loss")
    # small enough to be rounding, so re-run in float64: the gap stays, a real difference
    float64 = run.report["verdict"]["crossfeed"]["float64"]
    assert float64["ran"] and not float64["rounding"]
    top = diagnosis["findings"][0]
    assert top["cause"] == "label-smoothing" and top["numbers"]["side"] == "B"
    assert top["numbers"]["epsilon"] == pytest.approx(0.1, rel=1e-3) and top["numbers"]["residual"] < 1e-4


def test_cause12_different_initial_weights_with_init_own(session_tmp):
    # the pair's args add --init own (shared with tests/cli/test_examples.py)
    run = run_compare(CAUSES / "fit.py", CAUSES / "fit_seed1.py", *OPTS, "--init", "own", tmp_path=session_tmp)
    assert run.code == 1, run.output
    top = run.report["diagnosis"]["findings"][0]
    assert top["cause"] == "initial-weights", top
    assert top["numbers"]["differ"] == ["sequential/dense/kernel", "sequential/dense_1/kernel"]  # biases start at 0
    assert any("same initializer" in line for line in top["evidence"])


def test_cause13_probabilities_passed_as_logits(session_tmp):
    run, diagnosis = _run(session_tmp, "fit.py", "jax_probs_as_logits.py")
    assert run.code == 1, run.output
    top = diagnosis["findings"][0]
    assert top["cause"] == "probabilities-as-logits" and top["numbers"]["side"] == "B", top
    assert top["numbers"]["loss_recomputed"] == pytest.approx(run.report["per_step"][0]["loss_b"], rel=2e-5)


def test_cause14_hand_written_log_p_plus_eps_on_raw_pixels(session_tmp):
    raw = [("raw" if a == "unit" else a) for a in OPTS]  # pairs.json: --pixels raw
    run = run_compare(CAUSES / "fit.py", CAUSES / "jax_log_eps.py", *raw, tmp_path=session_tmp)
    assert run.code == 1, run.output
    top = run.report["diagnosis"]["findings"][0]
    assert top["cause"] == "logits-vs-probabilities" and top["numbers"]["prob_side"] == "B", top
    assert top["numbers"]["clip"][0] == 1e-8
    assert top["numbers"]["log_plus_eps"] == pytest.approx(run.report["per_step"][0]["loss_b"], rel=2e-5)


def test_cause6d_affine_normalization_recovers_mean_and_std(session_tmp):
    run, diagnosis = _run(session_tmp, "fit.py", "loop_normalize.py")
    assert run.code == 1, run.output
    top = diagnosis["findings"][0]
    assert top["cause"] == "input-normalization", top
    assert top["numbers"]["mean"] == pytest.approx(0.1307, rel=1e-3)
    assert top["numbers"]["std"] == pytest.approx(0.3081, rel=1e-3)


def test_cause7_sum_instead_of_mean(session_tmp):
    run, diagnosis = _run(session_tmp, "fit.py", "loop_sum.py")
    assert run.code == 1, run.output  # examples/causes/README.md: exit 1, step 0 · loss
    top = diagnosis["findings"][0]
    assert top["cause"] == "loss-scale"
    assert top["numbers"]["factor"] == pytest.approx(0.01, rel=1e-5)
    assert "batch" in top["numbers"]["named"]


def test_cause8_loop_forgets_model_losses(session_tmp):
    run, diagnosis = _run(session_tmp, "fit_l2.py", "loop_l2_forgot.py")
    assert run.code == 1, run.output  # examples/causes/README.md: exit 1, step 0 · loss
    (top,) = diagnosis["findings"]
    assert top["cause"] == "missing-regularization" and top["numbers"]["side"] == "B"
    assert top["numbers"]["lambda"] == {"sequential/dense/kernel": pytest.approx(1e-2, rel=1e-4)}
    assert "sum(model.losses)" in top["fix"]


def test_cause9_learning_rate(session_tmp):
    run, diagnosis = _run(session_tmp, "fit_sgd_string.py", "loop.py")
    assert run.code == 1, run.output  # examples/causes/README.md: exit 1, step 0 · weights
    (top,) = diagnosis["findings"]
    assert top["cause"] == "optimizer"
    assert (top["numbers"]["lr_a"], top["numbers"]["lr_b"]) == (pytest.approx(0.01, rel=1e-4),
                                                                 pytest.approx(0.1, rel=1e-4))


def test_cause10_float64_vs_float32_is_named_and_rounding_noise_is_not_called_a_bug(session_tmp):
    from conftest import SETUPS

    small = SETUPS / "jax_small.py"
    run = run_cli("compare", str(small), f"{small}:float64", "--subset", "200", "--pixels", "unit", "--steps", "1",
                  "--rtol", "1e-9", "--atol", "0", "--env-b", "JAX_ENABLE_X64=1", tmp_path=session_tmp)
    assert run.code == 1, run.output
    causes = [f["cause"] for f in run.report["diagnosis"]["findings"]]
    assert causes[0] == "float-precision" and "numeric-noise" in causes
    top = run.report["diagnosis"]["findings"][0]
    assert ["[0][0]", "float32", "float64"] in top["numbers"]["tensors"]
