"""The data-order account of a result (:func:`xentdbg.report.data_order.data_order`) and the
re-run on each other's batch (:class:`xentdbg.compare.divergence.Realigned`), on records
built in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.adapters.base import given_batch
from xentdbg.compare.divergence import Pairing, Realigned, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.records import SideInfo, StepRecord, batch_fingerprint
from xentdbg.report.data_order import data_order

PAIRING = Pairing([(0, 0)], [])
RNG = np.random.default_rng(1)
DATA_X = RNG.random((40, 5)).astype(np.float32)
DATA_Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 40)]
W = RNG.standard_normal((5, 3))


def record(index: np.ndarray, smooth: float = 0.0) -> StepRecord:
    """One step of softmax regression on the samples ``index`` (as tests/compare/test_alignment.py)."""
    x, y = DATA_X[index], DATA_Y[index]
    inputs, digests = batch_fingerprint(x, y)
    z = x @ W
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    target = (1 - smooth) * y + smooth / 3
    grad = x.T @ (p - target) / len(x)
    return StepRecord(0, {"inputs": inputs, "activations": [("dense", p.astype(np.float32))],
                          "loss": [("loss", np.float32(-(target * np.log(p)).sum(axis=1).mean()))],
                          "gradients": [("w", grad.astype(np.float32))]}, digests=digests)


def result(steps, kind_a="KerasFit") -> CompareResult:
    info = SideInfo(kind_a, {}, [], [])
    return CompareResult(CompareConfig("a.py", "b.py"), info, SideInfo("KerasLoop", {}, [], []), steps, [], {})


def test_reordered_steps_alone_are_reported_as_no_divergence():
    index = np.arange(20)
    steps = []
    for k in range(2):
        a, b = record(RNG.permutation(index)), record(index)
        a.step = b.step = k
        steps.append(compare_step(a, b, PAIRING, Tolerance()))
    account = data_order(result(steps))
    assert account is not None and account["reordered_steps"] == [0, 1] and account["kind"] == "order"
    text = " ".join(account["lines"])
    assert "do not depend on the order" in text and "nothing else differs" in text
    assert "side A" in text and "shuffle=False" in text


def test_other_samples_report_what_the_realignment_found():
    a, b = record(np.arange(0, 20)), record(np.arange(10, 30))
    step = compare_step(a, b, PAIRING, Tolerance())
    assert step.first is not None and step.first.phase == "inputs"
    # each side on the other's batch from the same weights: one side smooths its labels
    same = compare_step(a, record(np.arange(0, 20), smooth=0.1), PAIRING, Tolerance())
    agree = compare_step(record(np.arange(10, 30)), b, PAIRING, Tolerance())
    step.realigned = Realigned(same, agree)
    account = data_order(result([step]))
    assert account is not None and account["kind"] == "samples" and account["whole_story"] is False
    assert account["remaining"] == same.first.label and step.realigned.deciding is same
    step.realigned = Realigned(agree, agree)
    account = data_order(result([step]))
    assert account["whole_story"] and account["remaining"] is None
    assert any("whole story at step 0" in line for line in account["lines"])
    step.realigned = Realigned(agree, agree, uncovered=["weights"])
    assert not step.realigned.whole_story and step.realigned.first is None
    step.realigned = Realigned(None, None, unavailable="side A: no batch")
    assert any("Not re-run" in line and "no batch" in line for line in data_order(result([step]))["lines"])


def test_no_account_when_every_batch_agreed():
    index = np.arange(20)
    assert data_order(result([compare_step(record(index), record(index), PAIRING, Tolerance())])) is None


def test_another_sides_batch_takes_this_sides_dtypes_and_refuses_other_shapes():
    x, y = np.zeros((4, 6), np.float32), np.zeros((4, 3), np.float32)
    bx, by = given_batch([np.ones((5, 6), np.float64), np.ones((5, 3), np.int64)], x, y)
    assert bx.dtype == np.float32 and by.dtype == np.float32 and bx.shape == (5, 6)
    for bad in ([np.ones((4, 7)), np.ones((4, 3))], [np.ones((4, 6)), np.ones((4, 3)), np.full(4, 2.0)]):
        with pytest.raises(ValueError):
            given_batch(bad, x, y)
