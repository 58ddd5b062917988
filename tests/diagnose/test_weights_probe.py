"""The loss-weight probe (:mod:`xentdbg.diagnose.weights`): class and per-sample weights on
one side are recovered from synthetic output-layer records (pure numpy), it stays silent
where the difference is not a weighting, and it names the class weights of the example
pair ``examples/causes/fit.py`` vs ``fit_class_weight.py`` (one compare run, shared)."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.compare.divergence import Pairing, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.diagnose import diagnose
from xentdbg.diagnose.context import Context, Side
from xentdbg.diagnose.weights import sample_weights
from xentdbg.records import SideInfo, StepRecord, TensorSpec

from conftest import run_pair

RNG = np.random.default_rng(7)
N, H, K = 24, 16, 5  # N per-sample unknowns against (H + 1) K = 85 gradient elements
NAMES = ["out/kernel", "out/bias"]
W = [RNG.standard_normal((H, K)).astype(np.float32) * 0.5, RNG.standard_normal(K).astype(np.float32) * 0.1]
HID = np.maximum(RNG.standard_normal((N, H)), 0).astype(np.float32)  # relu features
LABELS = np.arange(N) % K  # every class present
Y = np.eye(K, dtype=np.float32)[LABELS]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


Z = HID.astype(np.float64) @ W[0] + W[1]
P = _softmax(Z)
ELL = -np.log(P[np.arange(N), LABELS])


def _record(w=None, target=None, loss=None):
    """One side's step: loss ``Σ w_i ℓ_i / N`` and output-layer gradients ``Σ w_i (p_i - t_i) [h_i; 1] / N``,
    stored in float32 as a framework holds them."""
    w = np.ones(N) if w is None else np.asarray(w, np.float64)
    t = Y if target is None else target
    delta = w[:, None] * (P - t) / N
    grads = [(HID.T @ delta).astype(np.float32), delta.sum(axis=0).astype(np.float32)]
    value = float(np.sum(w * ELL) / N) if loss is None else loss
    return StepRecord(0, {"loss": [("loss", np.float32(value))], "gradients": list(zip(NAMES, grads)),
                          "weights": list(zip(NAMES, W)), "state": [],
                          "activations": [("hidden", HID), ("out", P.astype(np.float32))]})


def _context(ra, rb):
    pairing = Pairing(params=[(0, 0), (1, 1)], state=[])
    step = compare_step(ra, rb, pairing, Tolerance())
    assert step.first is not None
    info = SideInfo("KerasLoop", {"backend": "tensorflow"}, [TensorSpec.of(n, w) for n, w in zip(NAMES, W)], [])
    before = list(zip(NAMES, W))
    return Context(step, Side("A", info, ra, before, []), Side("B", info, rb, before, []), pairing, Tolerance(),
                   None, Y, [step])


def test_class_weights_on_one_side_are_recovered_and_named():
    c = np.ones(K)
    c[2] = 3.0
    ctx = _context(_record(), _record(c[LABELS]))
    (found,) = sample_weights(ctx)
    assert found.cause == "sample-weights" and found.numbers["side"] == "B" and found.numbers["per"] == "class"
    recovered = found.numbers["class_weights"]
    assert [recovered["B"][str(k)] for k in range(K)] == pytest.approx(c, abs=1e-4)
    assert [recovered["A"][str(k)] for k in range(K)] == pytest.approx(np.ones(K), abs=1e-4)
    assert found.numbers["residual"] < 1e-5
    assert "class 2 by 3" in found.title and "class_weight={2: 3.0}" in found.fix
    assert diagnose(ctx).top.cause == "sample-weights"  # no other probe outranks it


def test_per_sample_weights_are_recovered_when_the_gradients_outnumber_the_samples():
    w = RNG.uniform(0.5, 1.5, N)
    (found,) = sample_weights(_context(_record(w), _record()))
    assert found.numbers["side"] == "A" and found.numbers["per"] == "sample"
    assert found.numbers["sample_weights"]["A"] == pytest.approx(w, abs=1e-4)
    assert found.numbers["sample_weights"]["B"] == pytest.approx(np.ones(N), abs=1e-4)


def test_silent_where_the_difference_is_no_weighting():
    plain = _record()
    # label smoothing 0.1 on B: the targets change, not the per-sample factors
    smooth = 0.9 * Y + 0.1 / K
    smoothed = _record(target=smooth, loss=float(np.mean(-(smooth * np.log(P)).sum(axis=1))))
    assert sample_weights(_context(plain, smoothed)) == []
    # every weight N (a sum reduction): one constant factor is a loss scale, not a weighting
    assert sample_weights(_context(plain, _record(np.full(N, float(N))))) == []
    # class weights in the gradients but a loss they do not give
    c = np.where(LABELS == 1, 2.0, 1.0)
    assert sample_weights(_context(plain, _record(c, loss=float(np.mean(ELL)) * 1.1))) == []
    # a random perturbation of B's gradients
    noisy = _record()
    noisy.tensors["gradients"] = [(n, g + RNG.standard_normal(g.shape).astype(np.float32) * 0.01)
                                  for n, g in noisy.tensors["gradients"]]
    noisy.tensors["loss"] = [("loss", np.float32(float(np.mean(ELL)) + 0.1))]
    assert sample_weights(_context(plain, noisy)) == []


@pytest.mark.slow
def test_example_pair_names_the_class_weight_with_its_value(session_tmp):
    run = run_pair("causes", "cause 15 class_weight on one side", session_tmp)
    assert run.code == 1, run.output[-3000:]
    top = run.report["diagnosis"]["findings"][0]
    assert top["cause"] == "sample-weights" and top["numbers"]["side"] == "B", top
    weights = top["numbers"]["class_weights"]
    assert weights["B"] == {str(k): pytest.approx(2.0 if k == 3 else 1.0, abs=1e-4) for k in range(10)}
    assert weights["A"] == {str(k): pytest.approx(1.0, abs=1e-4) for k in range(10)}
    assert top["numbers"]["residual"] < 1e-5
    assert "class_weight={3: 2.0}" in top["fix"]
