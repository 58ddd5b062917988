"""The fingerprint check is sound: whatever passes full comparison passes its fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.compare.fingerprint import fingerprint, fingerprints_agree
from xentdbg.compare.metrics import Tolerance, tensor_metrics

TOL = Tolerance()


@pytest.mark.parametrize("seed", range(200))
def test_never_flags_a_pair_that_full_comparison_passes(seed):
    # Every pair is built to pass full comparison (noise up to rtol = 1e-3 of the scale, the
    # edge of the rule), so each seed checks the soundness claim instead of skipping it.
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(rng.integers(1, 500)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
    noise = rng.choice([0.0, 1e-6, 1e-4, 9e-4, TOL.rtol])
    b = (a + noise * np.abs(a).max() * rng.uniform(-1, 1, a.shape)).astype(np.float32)
    assert tensor_metrics(a, b).within(TOL), "the premise: full comparison passes this pair"
    assert fingerprints_agree(fingerprint(a), fingerprint(b), TOL)


def test_flags_clear_differences():
    a = np.linspace(-1, 1, 100, dtype=np.float32)
    assert not fingerprints_agree(fingerprint(a), fingerprint(a * 1.1), TOL)
    assert not fingerprints_agree(fingerprint(a), fingerprint(np.where(a > 0.9, np.nan, a)), TOL)
    assert fingerprints_agree(fingerprint(a), fingerprint(a.copy()), TOL)


def test_nonfinite_elements_are_counted_not_summed():
    f = fingerprint(np.array([1.0, np.inf, np.nan, -2.0], np.float32))
    assert f.tolist() == [-1.0, pytest.approx(5 ** 0.5), 2.0, 2.0, 4.0]


# -- the first pass on records, and --fingerprint end to end ------------------------

def _record(step: int, w: np.ndarray, loss: float):
    from xentdbg.records import StepRecord

    return StepRecord(step, {"loss": [("loss", np.float32(loss))], "weights": [("w", w)]})


def test_compare_step_on_fingerprinted_records_flags_weights_only_when_they_differ():
    from xentdbg.compare.divergence import Pairing, compare_step
    from xentdbg.compare.fingerprint import FULL_BELOW, fingerprint_record

    w = np.linspace(-1, 1, FULL_BELOW + 1000, dtype=np.float32)
    a = fingerprint_record(_record(0, w, 1.0))
    assert a.fingerprinted == {("weights", "w")} and a.tensors["weights"][0][1].shape == (5,)
    small = fingerprint_record(_record(0, w[:FULL_BELOW], 1.0))
    assert not small.fingerprinted  # small tensors travel as values
    same = compare_step(a, fingerprint_record(_record(0, w.copy(), 1.0)), Pairing([(0, 0)], []), TOL)
    assert same.first is None
    moved = w.copy()
    moved[-500:] += 0.05
    diff = compare_step(a, fingerprint_record(_record(0, moved, 1.0)), Pairing([(0, 0)], []), TOL)
    assert (diff.first.phase, diff.first.name_a) == ("weights", "w")


@pytest.fixture(scope="module")
def case3_fingerprint(session_tmp):
    from conftest import ROOT, run_cli

    c3 = ROOT / "examples" / "case3_tf_function_loss"
    return run_cli("compare", str(c3 / "plain.py"), str(c3 / "decorated.py"), "--task", "digits", "--pixels", "unit",
                   "--batch-size", "256", "--subset", "512", "--steps", "2", "--fingerprint", tmp_path=session_tmp)


@pytest.mark.slow
def test_fingerprint_mode_finds_a_gradient_only_divergence_through_the_weights(case3_fingerprint):
    # The loops' light capture has no gradients; the weights' fingerprints flag step 0 and
    # pass 2 finds the gradient that full capture reports (tests/cli/test_case2_case3.py).
    run = case3_fingerprint
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"], first["name_a"]) == (0, "gradients", "sequential/dense/bias")
    assert run.report["fingerprint_pass"]["flagged"].startswith("step 0 · weights")
    assert run.report["steps_run"] == 1 and run.report["mode"] == "full"
    assert "pass 1 flagged step 0 · weights" in run.stdout


@pytest.mark.slow
def test_fingerprint_mode_on_a_clean_pair_says_what_it_did_not_check(session_tmp):
    from conftest import CASE1, run_cli, words

    run = run_cli("compare", str(CASE1 / "jax_logits.py"), str(CASE1 / "keras_fit.py"), "--steps", "4",
                  "--fingerprint", tmp_path=session_tmp)
    assert run.code == 0, run.output
    assert run.report["mode"] == "fingerprint" and run.report["all_bitwise_equal"] is False
    assert run.report["fingerprint_pass"] == {"steps": 4, "flagged": None}
    assert "screened by sum, norm and max|x|" in words(run.stdout)
