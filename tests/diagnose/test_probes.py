"""The diagnosis probes on synthetic records (pure numpy, no framework): each recognises its
cause from the numbers, and none fires on data that does not fit it."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.compare.divergence import Pairing, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.diagnose import diagnose
from xentdbg.diagnose.context import Context, Side
from xentdbg.records import SideInfo, StepRecord, TensorSpec

RNG = np.random.default_rng(0)
W0 = [RNG.standard_normal((8, 4)).astype(np.float32), np.zeros(4, np.float32)]
G = [RNG.standard_normal((8, 4)).astype(np.float32), RNG.standard_normal(4).astype(np.float32)]
NAMES = ["dense/kernel", "dense/bias"]


def _info(kind="KerasLoop", state=()):
    return SideInfo(kind, {"backend": "tensorflow"}, [TensorSpec.of(n, w) for n, w in zip(NAMES, W0)],
                    [TensorSpec.of(n, s) for n, s in state])


def _record(loss, grads, weights, state=(), acts=()):
    return StepRecord(0, {"loss": [("loss", np.float32(loss))], "gradients": list(zip(NAMES, grads)),
                          "weights": list(zip(NAMES, weights)), "state": list(state), "activations": list(acts)})


def _diagnose(ra, rb, state_before=(), kind_b="KerasLoop"):
    pairing = Pairing(params=[(0, 0), (1, 1)], state=[(i, i) for i in range(len(state_before))])
    step = compare_step(ra, rb, pairing, Tolerance())
    assert step.first is not None
    before = list(zip(NAMES, W0))
    infos = (_info(state=state_before), _info(kind_b, state=state_before))
    ctx = Context(step, Side("A", infos[0], ra, before, list(state_before)),
                  Side("B", infos[1], rb, before, list(state_before)), pairing, Tolerance(), None, None, [step])
    return diagnose(ctx)


def _sgd(lr, grads, decay=0.0):
    return [w - np.float32(lr) * g - np.float32(lr * decay) * w for w, g in zip(W0, grads)]


def test_learning_rate_ratio():
    d = _diagnose(_record(1.0, G, _sgd(0.01, G)), _record(1.0, G, _sgd(0.03, G)))
    assert d.top.cause == "optimizer"
    assert d.top.numbers["ratio"] == pytest.approx(3.0, rel=1e-4)


def test_decoupled_weight_decay_is_named():
    d = _diagnose(_record(1.0, G, _sgd(0.01, G)), _record(1.0, G, _sgd(0.01, G, decay=0.5)))
    assert d.top.cause == "optimizer"
    assert "decoupled weight decay" in d.top.numbers["updates"]["B"]
    assert "wd 0.5" in d.top.numbers["updates"]["B"]


def test_l1_regularization_on_the_kernel_only():
    lam = 0.05
    grads_b = [G[0] + np.float32(lam) * np.sign(W0[0]), G[1]]
    d = _diagnose(_record(1.0, grads_b, W0), _record(1.0, G, W0))
    assert d.top.cause == "missing-regularization" and d.top.numbers["side"] == "B"  # A has the penalty
    assert d.top.numbers["lambda"]["dense/kernel"] == pytest.approx(lam, rel=1e-4)
    assert "L1" in d.top.title


def test_batchnorm_momentum_convention_is_inferred_from_the_batch_mean():
    h = RNG.standard_normal((32, 4)).astype(np.float32) + 3.0
    mu = h.mean(axis=0)
    m0 = np.zeros(4, np.float32)
    acts = [("dense", h), ("batch_normalization", h), ("out", h)]
    keras = [("bn/batch_normalization/moving_mean", 0.99 * m0 + 0.01 * mu)]
    torch_style = [("bn/batch_normalization/moving_mean", 0.01 * m0 + 0.99 * mu)]
    before = [("bn/batch_normalization/moving_mean", m0)]
    d = _diagnose(_record(1.0, G, W0, keras, acts), _record(1.0, G, W0, torch_style, acts), before)
    assert d.top.cause == "batchnorm-momentum"
    assert "convention" in d.top.title
    assert (d.top.numbers["momentum_a"], d.top.numbers["momentum_b"]) == (pytest.approx(0.99, abs=1e-4),
                                                                          pytest.approx(0.01, abs=1e-4))


def test_no_probe_fits_random_differences_and_the_raw_evidence_is_shown():
    other = [g + RNG.standard_normal(g.shape).astype(np.float32) for g in G]
    d = _diagnose(_record(1.0, G, W0), _record(1.5, other, W0))
    assert d.findings == []
    assert d.unexplained[0].startswith("no probe's pattern fits")
    assert any("loss A 1, B 1.5" in line for line in d.unexplained)
    # per divergent tensor: its size, cosine and best constant ratio; then what agrees
    per_tensor = [line for line in d.unexplained if "gradients" in line and "cosine" in line and "B ≈" in line]
    assert len(per_tensor) == len(G), d.unexplained
    assert any(line.startswith("within tolerance: weights") for line in d.unexplained), d.unexplained


def _context(ra, rb, y):
    pairing = Pairing(params=[(0, 0), (1, 1)], state=[])
    step = compare_step(ra, rb, pairing, Tolerance())
    before = list(zip(NAMES, W0))
    return Context(step, Side("A", _info(), ra, before, []), Side("B", _info(), rb, before, []), pairing,
                   Tolerance(), None, y, [step])


def test_label_smoothing_on_one_side_is_recovered_from_the_output_bias_gradients():
    from xentdbg.diagnose.labels import label_smoothing

    k, n, eps = 4, 64, 0.1  # the output layer: dense/kernel (8, 4), dense/bias (4,)
    y = np.eye(k, dtype=np.float32)[RNG.integers(0, k, n)]
    p = RNG.dirichlet(np.ones(k), n).astype(np.float32)
    g_plain = (p - y).mean(axis=0)
    g_smooth = (p - ((1 - eps) * y + eps / k)).mean(axis=0)
    found = label_smoothing(_context(_record(1.0, [G[0], g_plain], W0), _record(1.0, [G[0], g_smooth], W0), y))
    assert found and found[0].numbers["side"] == "B" and found[0].numbers["epsilon"] == pytest.approx(eps, rel=1e-3)
    # another difference on the same bias (a constant shift) is not label smoothing
    shifted = _record(1.0, [G[0], g_plain + np.float32(0.01)], W0)
    assert label_smoothing(_context(_record(1.0, [G[0], g_plain], W0), shifted, y)) == []


def test_a_hand_written_log_p_plus_eps_is_told_from_a_clip_where_the_loss_can_tell():
    from xentdbg.diagnose.xent import _log_plus, log_plus_epsilon

    k, n = 4, 32
    y = np.eye(k, dtype=np.float32)[RNG.integers(0, k, n)]
    # predictions for the true class between 1e-9 and 1e-6: log(p + 1e-8) differs from log(max(p, 1e-8))
    p = RNG.dirichlet(np.ones(k), n).astype(np.float32)
    p[y.astype(bool)] = np.float32(10) ** RNG.uniform(-9, -6, n).astype(np.float32)
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    exact = float(np.mean(-np.sum(y * np.log(p.astype(np.float64)), axis=1)))
    by_hand = _log_plus(p.astype(np.float64), y.astype(np.float64), "categorical", 1e-8)
    acts = [("out", p)]
    ra, rb = _record(exact, G, W0, acts=acts), _record(by_hand, G, W0, acts=acts)
    found = log_plus_epsilon(_context(ra, rb, y))
    assert found and found[0].numbers["side"] == "B" and found[0].numbers["epsilon"] == 1e-8
    # the exact loss on both sides: nothing to find
    assert log_plus_epsilon(_context(ra, _record(exact * 1.5, G, W0, acts=acts), y)) == []


def _dropout_records(rate, keep_a, keep_b, h, scale_b=None):
    c = np.float32(1.0 / (1.0 - rate))
    out_a = h * keep_a * c
    out_b = h * keep_b * (c if scale_b is None else np.float32(scale_b))
    acts_a = [("dense", h), ("dropout", out_a), ("dense_1", out_a[:, :2])]
    acts_b = [("dense", h), ("dropout", out_b), ("dense_1", out_b[:, :2])]
    return _record(1.0, G, W0, acts=acts_a), _record(1.1, G, W0, acts=acts_b)


def test_dropout_masks_drawn_from_other_streams_are_named():
    h = np.abs(RNG.standard_normal((64, 16))).astype(np.float32) + 0.1
    keep_a, keep_b = (RNG.random((64, 16)) > 0.3).astype(np.float32), (RNG.random((64, 16)) > 0.3).astype(np.float32)
    d = _diagnose(*_dropout_records(0.3, keep_a, keep_b, h))
    assert d.top.cause == "dropout-masks"
    assert d.top.numbers["rate"] == pytest.approx(0.3, abs=1e-6)
    assert d.top.numbers["masks_agree"] == pytest.approx(float(np.mean(keep_a == keep_b)))
    assert d.top.numbers["independent_agree"] == pytest.approx(0.3 ** 2 + 0.7 ** 2)


def test_dropout_probe_stays_silent_when_the_numbers_do_not_fit():
    h = np.abs(RNG.standard_normal((64, 16))).astype(np.float32) + 0.1
    keep_a, keep_b = (RNG.random((64, 16)) > 0.3).astype(np.float32), (RNG.random((64, 16)) > 0.3).astype(np.float32)
    # another rate on one side: a different model, not another draw
    assert all(f.cause != "dropout-masks" for f in _diagnose(*_dropout_records(0.3, keep_a, keep_b, h, 2.0)).findings)
    # B's output is no dropout of the input (scaled by a non-constant factor)
    ra, rb = _dropout_records(0.3, keep_a, keep_b, h)
    rb.tensors["activations"][1] = ("dropout", h * (1.0 + RNG.random((64, 16)).astype(np.float32)))
    assert all(f.cause != "dropout-masks" for f in _diagnose(ra, rb).findings)
    # the dropout's input already differs: the masks are not where the difference starts
    ra, rb = _dropout_records(0.3, keep_a, keep_b, h)
    rb.tensors["activations"][0] = ("dense", h * 1.5)
    assert all(f.cause != "dropout-masks" for f in _diagnose(ra, rb).findings)


def _bn_records(k_a: float, k_b: float):
    """Conv output h (8, 3, 3, 4) into a BatchNorm with momentum 0.99; side X puts k_X * var
    into its moving variance."""
    h = (RNG.standard_normal((8, 3, 3, 4)) * 10 + 1).astype(np.float32)
    rows = h.reshape(-1, 4).astype(np.float64)
    mu, var = rows.mean(axis=0), rows.var(axis=0)
    before = [("seq/bn/moving_mean", np.zeros(4, np.float32)), ("seq/bn/moving_variance", np.ones(4, np.float32))]
    acts = [("conv", h), ("bn", h), ("dense", h.reshape(8, -1))]

    def state(k):
        return [("seq/bn/moving_mean", (0.01 * mu).astype(np.float32)),
                ("seq/bn/moving_variance", (0.99 + 0.01 * k * var).astype(np.float32))]
    return _record(1.0, G, W0, state(k_a), acts), _record(1.0, G, W0, state(k_b), acts), before


def test_unbiased_moving_variance_of_a_fused_batchnorm_is_named():
    n = 8 * 3 * 3
    ra, rb, before = _bn_records(n / (n - 1), 1.0)
    d = _diagnose(ra, rb, before)
    assert d.top.cause == "batchnorm-variance-correction"
    assert d.top.numbers["side"] == "A" and d.top.numbers["n"] == n
    assert d.top.numbers["k_a"] == pytest.approx(n / (n - 1), rel=1e-5)
    assert d.top.numbers["momentum"] == pytest.approx(0.99, abs=1e-5)


def test_batchnorm_variance_probe_needs_the_n_over_n_minus_1_factor():
    ra, rb, before = _bn_records(1.05, 1.0)  # some other factor: not Bessel's correction
    assert all(f.cause != "batchnorm-variance-correction" for f in _diagnose(ra, rb, before).findings)


def _batch_record(step, x, y):
    from xentdbg.records import batch_fingerprint

    inputs, digests = batch_fingerprint(x, y)
    return StepRecord(step, {"inputs": inputs, "loss": [("loss", np.float32(1.0))]}, digests=digests)


def test_a_side_that_repeats_an_earlier_epoch_order_is_named():
    from xentdbg.diagnose.epochs import repeated_epoch_order

    data = RNG.random((6, 10, 4)).astype(np.float32)  # six batches of 10 samples
    y = np.zeros((10, 2), np.float32)
    pairing = Pairing(params=[], state=[])
    history = [compare_step(_batch_record(k, data[k], y), _batch_record(k, data[k], y), pairing, Tolerance())
               for k in range(3)]
    # step 3: A draws a new batch, B its step-0 batch again (Keras 3's fit under a global seed)
    ra, rb = _batch_record(3, data[3], y), _batch_record(3, data[0], y)
    step = compare_step(ra, rb, pairing, Tolerance())
    infos = (SideInfo("KerasFit", {"tf_keras": "2.21.0", "library": "tf_keras"}, [], []),
             SideInfo("KerasFit", {"keras": "3.15.1", "tf_keras": "2.21.0", "library": "keras"}, [], []))
    ctx = Context(step, Side("A", infos[0], ra, [], []), Side("B", infos[1], rb, [], []), pairing, Tolerance(),
                  None, None, [*history, step])
    found = repeated_epoch_order(ctx)
    assert [f.numbers for f in found] == [{"side": "B", "step": 3, "repeats_step": 0}]
    assert any("Keras 3" in line for line in found[0].evidence)
    # both sides new at step 3: nothing repeats
    step = compare_step(ra, _batch_record(3, data[4], y), pairing, Tolerance())
    ctx = Context(step, ctx.a, Side("B", infos[1], _batch_record(3, data[4], y), [], []), pairing, Tolerance(),
                  None, None, [*history, step])
    assert repeated_epoch_order(ctx) == []
