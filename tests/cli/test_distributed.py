"""One device against 4 replicas of tf.distribute.MirroredStrategy (examples/distributed),
with a custom loop and with model.fit: the clean pairs differ by summation order only, the
missing loss scaling and per-replica BatchNorm are named with their per-replica evidence.

Each test reads the report of one example pair (``conftest.run_pair``: the run is shared
with ``test_examples.py``, which checks the exit codes)."""

from __future__ import annotations

import pytest

from conftest import run_pair, words

pytestmark = pytest.mark.slow


def _top(report: dict) -> dict:
    return report["diagnosis"]["findings"][0]


def test_missing_loss_scaling_is_named_with_the_replicas_losses(session_tmp):
    run = run_pair("distributed", "4 replicas without compute_average_loss: gradients 4x", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    first = report["first_divergence"]
    assert (first["step"], first["phase"]) == (0, "loss")
    top = _top(report)
    assert top["cause"] == "unscaled-replica-loss", report["diagnosis"]
    assert top["numbers"]["replicas"] == 4 and abs(top["numbers"]["factor"] - 4) < 1e-4
    evidence = " ".join(top["evidence"])
    assert "local gradients sum to the applied ones" in evidence
    assert "average to" in evidence and "each is a mean over the replica's own samples" in evidence
    assert "compute_average_loss" in top["fix"]


@pytest.mark.parametrize("pair", ["one device against 4 replicas (clean)",
                                  "model.fit: one device against 4 replicas (clean)"])
def test_one_device_against_four_replicas_differs_by_summation_order_only(session_tmp, pair):
    run = run_pair("distributed", pair, session_tmp)
    assert run.code == 0, run.output[-3000:]
    report = run.report
    fw = report["b"]["framework"]
    assert (fw["strategy"], fw["replicas"]) == ("MirroredStrategy", "4")
    assert "4 replicas (MirroredStrategy)" in words(run.stdout)
    steps = report["per_step"]
    assert len(steps) == 3 and not any(s["flagged"] for s in steps)
    # another summation order: the gradients are not bitwise equal, but far inside the tolerance
    assert 0 < max(s["max_grad_diff"] for s in steps) < 1e-6, steps
    assert all(s["crossfeed"] is None or s["crossfeed"]["ran"] for s in steps)


def test_per_replica_batchnorm_is_located_at_the_layer_and_named(session_tmp):
    run = run_pair("distributed", "per-replica BatchNorm against one device's", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    assert report["first_divergence"]["step"] == 0
    located = report["first_layer_output_divergence"]
    assert (located["step"], located["name_b"]) == (0, "batch_normalization")
    assert ("state", "sequential/batch_normalization/moving_mean") in {
        (t["phase"], t["name_a"]) for t in report["also_diverged_in_step"]}
    top = _top(report)
    assert top["cause"] == "per-replica-batchnorm", report["diagnosis"]
    assert top["numbers"]["layers"] == ["sequential/batch_normalization"]
    evidence = " ".join(top["evidence"])
    assert "replica r's 16/16/16/16 samples" in evidence and "fits the mean of all 64 samples" in evidence
    assert "synchronized=True" in top["fix"]
