"""Probe fixes found by pairs written blind from the README (the issue 13 acceptance set):
each on synthetic records (pure numpy, no framework).

- a normalization inside the step, where some hidden units are active on both sides fewer
  than 3 times (they have no per-unit mean and were wrongly kept in the residual);
- a loss-formula cause on a side that records no layer outputs (a JAX loss function
  without stax ``layers``): its output is the other side's when both held the same
  weights before the step;
- a Rescaling layer on side A is side A's doing (the ratio B/A alone does not say who).
"""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.compare.divergence import Pairing, compare_step
from xentdbg.compare.matching import Matching
from xentdbg.compare.metrics import Tolerance
from xentdbg.diagnose.context import Context, Side
from xentdbg.diagnose.data import normalized_input, rescaled_input
from xentdbg.diagnose.xent import log_plus_epsilon, probabilities_as_logits
from xentdbg.losses.models import categorical_from_logits, softmax
from xentdbg.records import SideInfo, StepRecord, TensorSpec

RNG = np.random.default_rng(3)
N, D, H, K = 60, 20, 12, 4
X = RNG.uniform(0, 1, (N, D))
W1, B1 = RNG.standard_normal((D, H)) * 0.3, RNG.standard_normal(H) * 0.1
W2, B2 = RNG.standard_normal((H, K)) * 0.3, np.zeros(K)
Y = np.eye(K)[RNG.integers(0, K, N)]
NAMES = ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]
WEIGHTS = [W1, B1, W2, B2]


def _forward(x, b1=B1):
    h = np.maximum(x @ W1 + b1, 0)
    return h, softmax(h @ W2 + B2)


def _record(loss, acts, grads_scale=1.0):
    grads = [np.full(w.shape, grads_scale, np.float32) for w in WEIGHTS]
    return StepRecord(0, {"loss": [("loss", np.float32(loss))], "gradients": list(zip(NAMES, grads)),
                          "weights": list(zip(NAMES, [np.float32(w) for w in WEIGHTS])),
                          "activations": [(n, np.float32(a)) for n, a in acts]})


def _context(ra, rb, unpaired=()):
    pairing = Pairing(params=[(i, i) for i in range(4)], state=[])
    if unpaired:
        pairing.activations = Matching([(i, i) for i in range(len(ra.tensors["activations"]))], [], list(unpaired))
    step = compare_step(ra, rb, pairing, Tolerance())
    info = SideInfo("KerasLoop", {}, [TensorSpec.of(n, w) for n, w in zip(NAMES, WEIGHTS)], [])
    before = [(n, np.float32(w)) for n, w in zip(NAMES, WEIGHTS)]
    return Context(step, Side("A", info, ra, before, []), Side("B", info, rb, list(before), []), pairing, Tolerance(),
                   np.float32(X), np.float32(Y), [step])


def test_normalization_is_recovered_when_some_units_are_rarely_active_on_both_sides():
    mean, std = 0.4, 0.7
    ha, pa = _forward(X)
    hb, pb = _forward((X - mean) / std)
    assert ((ha > 0) & (hb > 0)).sum(axis=0).min() < 3  # the case that was missed
    loss_a, loss_b = (float(np.mean(-np.sum(Y * np.log(p), axis=1))) for p in (pa, pb))
    ctx = _context(_record(loss_a, [("hidden", ha), ("out", pa)]), _record(loss_b, [("hidden", hb), ("out", pb)]))
    found = normalized_input(ctx)
    assert found and found[0].numbers["mean"] == pytest.approx(mean, rel=1e-3)
    assert found[0].numbers["std"] == pytest.approx(std, rel=1e-3)


def test_probabilities_as_logits_on_a_side_without_layer_outputs_reads_the_other_sides():
    h, p = _forward(X)
    loss_a = float(np.mean(-np.sum(Y * np.log(p), axis=1)))
    loss_b = float(np.mean(categorical_from_logits(Y, p)))  # B: softmax output fed to a from-logits loss
    ra, rb = _record(loss_a, [("hidden", h), ("out", p)]), _record(loss_b, [])
    found = probabilities_as_logits(_context(ra, rb))
    assert found and found[0].numbers["side"] == "B"
    assert any("records no layer outputs" in e for e in found[0].evidence)


def test_outputs_are_not_borrowed_when_the_weights_before_the_step_differ():
    h, p = _forward(X)
    loss_b = float(np.mean(categorical_from_logits(Y, p)))
    ctx = _context(_record(1.0, [("hidden", h), ("out", p)]), _record(loss_b, []))
    ctx.b.weights_before[0] = (NAMES[0], np.float32(W1 + 1e-3))
    assert probabilities_as_logits(ctx) == []


def test_a_rescaling_layer_is_attributed_to_the_side_that_has_it():
    ha, pa = _forward(X / 255, b1=0)  # A: Rescaling(1/255) on inputs already in [0, 1]; Keras' zero bias init
    hb, pb = _forward(X, b1=0)
    ra, rb = _record(2.0, [("hidden", ha), ("out", pa)]), _record(1.0, [("hidden", hb), ("out", pb)])
    ctx = _context(ra, rb, unpaired=["A rescaling (60, 20)"])
    found = rescaled_input(ctx)
    assert found and found[0].title == "Side A rescales its inputs inside the training step"
    assert any("side A multiplies its inputs by 0.00392157 (/ 255)" in e for e in found[0].evidence)


# From the second blind set: the other side's network ends in logits (rows not summing to 1).

def _logits(x):
    h = np.maximum(x @ W1 + B1, 0)
    return h, h @ W2 + B2


def test_probabilities_as_logits_against_a_side_whose_network_ends_in_logits():
    h, z = _logits(X)
    p = softmax(z)
    loss_a = float(np.mean(categorical_from_logits(Y, p)))  # A: softmax output fed to a from-logits loss
    loss_b = float(np.mean(categorical_from_logits(Y, z)))  # B: Dense(10) logits, from_logits=True
    found = probabilities_as_logits(_context(_record(loss_a, [("hidden", h), ("out", p)]),
                                             _record(loss_b, [("hidden", h), ("out", z)])))
    assert found and found[0].numbers["side"] == "A"
    assert any("network ends in logits" in e for e in found[0].evidence)


def test_log_plus_epsilon_against_a_side_whose_network_ends_in_logits():
    h, z = _logits(X * 40)  # saturated: some probabilities underflow below the epsilon
    p = np.float32(softmax(z)).astype(np.float64)
    loss_a = float(np.mean(categorical_from_logits(Y, z)))
    loss_b = float(np.mean(-np.sum(Y * np.log(p + 1e-7), axis=1)))
    found = log_plus_epsilon(_context(_record(loss_a, [("hidden", h), ("out", z)]),
                                      _record(loss_b, [("hidden", h), ("out", p)])))
    assert found and found[0].numbers == {"side": "B", "epsilon": 1e-7, "loss_recomputed": pytest.approx(loss_b)}


def test_a_normalization_layer_is_attributed_to_the_side_that_has_it():
    mean, std = 0.4, 0.7
    ha, pa = _forward((X - mean) / std)  # A: a Normalization layer
    hb, pb = _forward(X)
    loss_a, loss_b = (float(np.mean(-np.sum(Y * np.log(p), axis=1))) for p in (pa, pb))
    ctx = _context(_record(loss_a, [("hidden", ha), ("out", pa)]), _record(loss_b, [("hidden", hb), ("out", pb)]),
                   unpaired=["A normalization (60, 20)"])
    found = normalized_input(ctx)
    assert found and found[0].title == "Side A normalizes its inputs inside its step: (x - 0.4) / 0.7"
    assert found[0].numbers["mean"] == pytest.approx(mean, rel=1e-3) and found[0].numbers["side"] == "A"
