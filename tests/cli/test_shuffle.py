"""fit's default shuffle must not hide the real bug (examples/shuffle): the data order is
reported, the samples are lined up, and what else differs is found and named.

Each test reads the report of one example pair (``conftest.run_pair``: the run is shared
with ``test_examples.py``, which checks the exit codes)."""

from __future__ import annotations

import pytest

from conftest import run_pair

pytestmark = pytest.mark.slow


def _causes(report: dict) -> list[str]:
    return [f["cause"] for f in report["diagnosis"]["findings"]]


def test_same_samples_in_another_order_alone_is_not_a_divergence(session_tmp):
    run = run_pair("shuffle", "order: one full batch, fit shuffles it (clean)", session_tmp)
    assert run.code == 0, run.output[-3000:]
    report = run.report
    assert report["first_divergence"] is None
    order = report["data_order"]
    assert order["reordered_steps"] == [0, 1] and order["kind"] == "order"
    assert all(s["reordered"] and s["alignment"]["kind"] == "order" for s in report["per_step"])
    text = " ".join(order["lines"])
    assert "same 100 samples in another order" in text and "do not depend on the order" in text
    assert "nothing else differs" in text and "shuffle=False" in text
    assert "Data order" in run.stdout


def test_a_second_bug_survives_the_alignment_of_a_reordered_batch(session_tmp):
    run = run_pair("shuffle", "order: one full batch shuffled, and label smoothing", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    first = report["first_divergence"]
    assert (first["step"], first["phase"]) == (0, "loss")
    assert report["per_step"][0]["reordered"]
    assert report["data_order"]["remaining"] == "step 0 · loss · loss"
    top = report["diagnosis"]["findings"][0]
    assert top["cause"] == "label-smoothing" and top["numbers"]["side"] == "A"
    assert abs(top["numbers"]["epsilon"] - 0.1) < 1e-4


def test_other_samples_report_the_data_order_and_still_name_the_second_bug(session_tmp):
    run = run_pair("shuffle", "samples: fit shuffles, and label smoothing", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    first = report["first_divergence"]
    assert (first["step"], first["phase"], first["name_a"]) == (0, "inputs", "x")
    order = report["data_order"]
    assert order["kind"] == "samples" and order["realigned"]["ran"] and not order["whole_story"]
    assert order["remaining"] == "step 0 · loss · loss"
    remaining = order["remaining_divergence"]
    assert remaining["phase"] == "loss" and remaining["metrics"]["max_abs"] > 1e-3, remaining
    causes = _causes(report)
    assert causes[:2] == ["different-data", "label-smoothing"], causes
    data, smoothing = report["diagnosis"]["findings"][:2]
    assert "shuffle=False" in data["fix"]
    assert any("remains after alignment" in e for e in data["evidence"])
    assert abs(smoothing["numbers"]["epsilon"] - 0.1) < 1e-4 and smoothing["numbers"]["side"] == "A"
    assert "After alignment, likely cause" in run.stdout


def test_when_the_order_is_the_whole_story_the_report_says_so(session_tmp):
    run = run_pair("shuffle", "samples: fit on JAX shuffles, JAX port in order", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    order = report["data_order"]
    assert order["whole_story"] and order["remaining"] is None, order
    assert order["realigned"]["view_a_first"] is None and order["realigned"]["view_b_first"] is None
    assert _causes(report) == ["different-data"]
    assert any("whole story at step 0" in e for e in report["diagnosis"]["findings"][0]["evidence"])


def test_cause_6_keeps_its_verdict_and_finds_nothing_else(session_tmp):
    run = run_pair("causes", "cause 6 fit shuffles", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    assert report["first_divergence"]["phase"] == "inputs"
    assert report["data_order"]["whole_story"] is True
    assert "shuffle=False" in report["diagnosis"]["findings"][0]["fix"]


def test_a_side_that_cannot_rerun_its_update_leaves_the_weights_unknown(session_tmp):
    run = run_pair("shuffle", "samples: fit shuffles, tf_keras K.function in order", session_tmp)
    assert run.code == 1, run.output[-3000:]
    order = run.report["data_order"]
    assert order["realigned"]["ran"] and order["realigned"]["uncovered"] == ["weights"], order
    assert order["whole_story"] is False and order["remaining"] is None
    assert any("could not re-run weights" in line for line in order["lines"])


def test_both_sides_shuffled_alike_still_give_the_probes_their_batch(session_tmp):
    run = run_pair("shuffle", "shuffled alike: both fit, and label smoothing", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    assert report["data_order"] is None  # the same batches: nothing to align
    top = report["diagnosis"]["findings"][0]
    assert top["cause"] == "label-smoothing" and top["numbers"]["side"] == "B", report["diagnosis"]
    # fitted to the class frequencies of fit's shuffled batch: those of samples 0..99 leave no fit
    assert abs(top["numbers"]["epsilon"] - 0.1) < 1e-4 and top["numbers"]["residual"] < 1e-4
