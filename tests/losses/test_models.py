"""The cross-entropy models (xentdbg.losses.models): each formula against a hand-written float64
one, the citations against the installed libraries' files, and case 1's step-0 losses
through the same functions the diagnosis of a replay calls."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xentdbg.losses import models as m
from xentdbg.losses.inputs import BCE, CCE, SCCE

from conftest import CASE1, ROOT

HIGH = float(np.float32(1 - 1e-7))  # 0.99999988079071
T2 = np.array([[0.0, 1.0], [1.0, 0.0]])
P2 = np.array([[0.2, 0.8], [0.9, 0.3]])  # row 1 sums to 1.2


def test_epsilon_and_bounds():
    assert m.EPSILON == 1e-7
    assert float(m.LOW) == float(np.float32(1e-7)) and float(m.HIGH) == HIGH < 1 - 1e-7


def test_links():
    z = np.array([[0.0, np.log(3.0)], [1000.0, -1000.0]])
    np.testing.assert_allclose(m.sigmoid(z[0]), [0.5, 0.75])
    np.testing.assert_allclose(m.softmax(z), [[0.25, 0.75], [1.0, 0.0]])
    np.testing.assert_allclose(m.logsumexp(z), [[np.log(4.0)], [1000.0]])  # no overflow
    np.testing.assert_allclose(m.log_softmax(z)[0], np.log([0.25, 0.75]))
    assert m.onehot(np.array([1, 0]), 3).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_from_logits_are_the_textbook_formulas():
    t, z = np.array([1.0, 0.0, 1.0]), np.array([2.0, -1.0, -30.0])
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(m.binary_from_logits(t, z), -(t * np.log(s) + (1 - t) * np.log(1 - s)), rtol=1e-12)
    zz = np.array([[1.0, 2.0, 3.0]])
    tt = np.array([[0.0, 0.5, 0.5]])
    p = np.exp(zz) / np.exp(zz).sum()
    np.testing.assert_allclose(m.categorical_from_logits(tt, zz), [-(tt * np.log(p)).sum()], rtol=1e-12)
    # the fused op's gradient is softmax - t: the exact one, softmax * Σt - t, when the row sums to 1
    np.testing.assert_allclose(m.fused_softmax_gradient(tt, zz), p - tt, rtol=1e-12)
    _, _, exact = m.reference(CCE, 0.1 * tt, zz, True)
    np.testing.assert_allclose(exact - m.fused_softmax_gradient(0.1 * tt, zz), -0.9 * p, rtol=1e-12)


def test_keras3_binary_clips_and_tf_keras_adds_epsilon_inside_the_log():
    t, p = np.array([[1.0], [0.0]]), np.array([[1.0], [1.0]])  # preset "saturated"
    np.testing.assert_allclose(m.binary_clipped(t, p)[:, 0], [-np.log(HIGH), -np.log(1 - HIGH)], rtol=1e-12)
    e = float(np.float32(1e-7))
    np.testing.assert_allclose(m.tf_keras_binary(t, p)[:, 0], [-np.log(HIGH + e), -np.log(1 - HIGH + e)], rtol=1e-12)
    # inside the bounds nothing is clipped: the textbook formula and its gradient
    t, p = np.array([[1.0, 0.0]]), np.array([[0.25, 0.5]])
    np.testing.assert_allclose(m.binary_clipped(t, p), [[np.log(4), np.log(2)]], rtol=1e-12)
    np.testing.assert_allclose(m.binary_clipped_gradient(t, p, tie=1.0), [[-4 / 2, 2 / 2]], rtol=1e-12)
    assert m.binary_clipped_gradient(np.array([1.0]), np.array([1.0]), tie=1.0)[0] == 0  # clipped: no gradient


def test_float32_clip_rounds_the_operand_and_the_bounds():
    p = np.array([[0.9999999]])
    assert m.clip(p, 1e-6, 0.9999999)[0, 0] == 0.9999999  # float64: nothing to clip
    assert m.clip(p, 1e-6, 0.9999999, float32=True)[0, 0] == float(np.float32(0.9999999))


def test_categorical_normalizes_then_clips():
    per = m.categorical_clipped(T2, P2)
    np.testing.assert_allclose(per, [-np.log(0.8), -np.log(0.9 / 1.2)], rtol=1e-12)
    # d/dp of mean(-Σ t log(p/Σp)): -t/(N p) + Σt/(N Σp)
    grad = m.categorical_clipped_gradient(T2, P2, tie=1.0)
    np.testing.assert_allclose(grad, -T2 / (2 * P2) + 1 / (2 * P2.sum(-1, keepdims=True)), rtol=1e-12)
    case4 = m.categorical_clipped(T2, np.array([[0.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(case4, [-np.log(HIGH), -np.log(float(np.float32(1e-7)))], rtol=1e-12)
    assert np.float32(case4.mean()) == np.float32(8.05904769897461)  # case 4: Keras' loss, every backend


def test_sparse_tensorflow_clips_first_jax_normalizes_first():
    t, p = T2, np.array([[0.2, 0.8], [1.5, 0.5]])
    np.testing.assert_allclose(m.sparse_clip_then_normalize(t, p), [-np.log(0.8), -np.log(HIGH / (HIGH + 0.5))],
                               rtol=1e-12)
    np.testing.assert_allclose(m.sparse_normalize_then_clip(t, p), [-np.log(0.8), -np.log(0.75)], rtol=1e-12)
    np.testing.assert_allclose(m.sparse_clip_then_normalize_gradient(t[:1], p[:1], tie=1.0),
                               [[1 / 1.0, 1 / 1.0 - 1 / 0.8]], rtol=1e-12)
    np.testing.assert_allclose(m.sparse_normalize_then_clip_gradient(t[:1], p[:1], tie=1.0),
                               m.categorical_clipped_gradient(t[:1], p[:1], tie=1.0), rtol=1e-12)


def test_reference_is_unclipped_float64():
    per, red, grad = m.reference(CCE, T2, P2, False)
    np.testing.assert_allclose(per, [-np.log(0.8), -np.log(0.9)], rtol=1e-12)
    np.testing.assert_allclose(grad, -T2 / (2 * P2), rtol=1e-12)
    per, _, _ = m.reference(SCCE, np.array([1, 0]), np.array([[0.0, 1.0], [0.0, 1.0]]), False)
    assert per.tolist() == [0.0, np.inf]
    per, red, grad = m.reference(BCE, np.array([[1.0]]), np.array([[0.0]]), True)
    assert per[0] == pytest.approx(np.log(2)) and grad[0, 0] == pytest.approx(-0.5)


def test_clip_pass_splits_a_tie_on_jax():
    x = np.array([0.5, float(m.LOW), float(m.HIGH), 1.0, 0.0])
    assert m.clip_pass(x, 1.0).tolist() == [1, 1, 1, 0, 0]
    assert m.clip_pass(x, 0.5).tolist() == [1, 0.5, 0.5, 0, 0]


# --- the citations: each cited line range holds what the model follows ----------------------------


def _site(path: str) -> Path | None:
    spec = importlib.util.find_spec(path.split("/")[0])  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).parent / path


def _lines(path: str, span: str) -> str:
    file = _site(path)
    if file is None or not file.is_file():
        pytest.skip(f"{path} is not installed")
    first, _, last = span.partition("-")
    text = file.read_text().splitlines()
    return "\n".join(text[int(first) - 1:int(last or first)])


CITATIONS = [  # every "path:lines" that xentdbg/losses/ cites, and a string those lines hold
    ("keras/src/backend/config.py:10", "_EPSILON = 1e-7"),
    ("tf_keras/src/backend_config.py:26", "_EPSILON = 1e-7"),
    ("keras/src/backend/tensorflow/nn.py:1372-1378", "tf.clip_by_value"),
    ("keras/src/backend/jax/nn.py:983-985", "jnp.clip"),
    ("keras/src/backend/jax/nn.py:983-986", "-jnp.sum(target * log_prob"),
    ("tf_keras/src/backend.py:5589-5594", "tf.clip_by_value"),
    ("keras/src/backend/tensorflow/nn.py:1484-1489", "tf.math.log(1 - output)"),
    ("keras/src/backend/jax/nn.py:1033-1036", "jnp.log(1.0 - output)"),
    ("tf_keras/src/backend.py:5828-5834", "log(1 - output + epsilon())"),
    ("keras/src/backend/tensorflow/nn.py:1432-1440", "sparse_softmax_cross_entropy_with_logits"),
    ("keras/src/backend/jax/nn.py:1010-1012", "jnp.clip"),
    ("keras/src/backend/jax/nn.py:1010-1014", "one_hot"),
    ("tf_keras/src/backend.py:5733-5735", "tf.math.log(output)"),
    ("tf_keras/src/backend.py:5781", "sparse_softmax_cross_entropy_with_logits"),
    ("keras/src/backend/tensorflow/nn.py:1364", "softmax_cross_entropy_with_logits"),
    ("keras/src/backend/tensorflow/nn.py:1479", "sigmoid_cross_entropy_with_logits"),
    ("keras/src/backend/jax/nn.py:981", "log_softmax"),
    ("keras/src/backend/jax/nn.py:1029-1031", "log_sigmoid"),
    ("tf_keras/src/backend.py:5581", "softmax_cross_entropy_with_logits"),
    ("tf_keras/src/backend.py:5824", "sigmoid_cross_entropy_with_logits"),
    ("keras/src/losses/losses.py:2414-2417", "ops.mean"),
    ("optax/losses/_classification.py:80-83", "log_sigmoid"),
    ("optax/losses/_classification.py:295-296", "log_softmax"),
    ("optax/losses/_classification.py:400-404", "logsumexp"),
    ("jax/_src/ops/special.py:86-97", "isfinite(amax)"),
    ("jax/_src/numpy/lax_numpy.py:3407-3409", "ufuncs.maximum(min, arr)"),
    ("tensorflow/python/ops/clip_ops.py:111-116", "math_ops.minimum(values, clip_value_max)"),
    ("tensorflow/python/ops/math_grad.py:1583-1592", "_MaximumGrad"),
    ("tensorflow/python/ops/nn_grad.py:514-522", "softmax_grad = op.outputs[1]"),
    ("tensorflow/python/ops/nn_impl.py:144-145", "log1p(math_ops.exp(neg_abs_logits))"),
    # cited by the findings (xentdbg/losses/findings.py)
    ("keras/src/backend/tensorflow/nn.py:1372", "output / tf.reduce_sum(output"),
    ("keras/src/backend/jax/nn.py:983", "output / jnp.sum(output"),
    ("tf_keras/src/backend.py:5589", "output / tf.reduce_sum(output"),
    ("keras/src/backend/tensorflow/nn.py:1438", "sparse_softmax_cross_entropy_with_logits"),
    ("keras/src/backend/jax/nn.py:1010", "output / jnp.sum(output"),
    ("tf_keras/src/backend.py:5832-5833", "tf.math.log(1 - output + epsilon())"),
    ("keras/src/backend/tensorflow/nn.py:1487-1488", "tf.math.log(1 - output)"),
    ("keras/src/activations/activations.py:158-163", "output._keras_logits = x"),
    ("keras/src/activations/activations.py:497-503", "output._keras_logits = x"),
    ("keras/src/backend/tensorflow/nn.py:1267", "_keras_logits"),
    ("tf_keras/src/backend.py:5496", "_keras_logits"),
    ("keras/src/backend/jax/nn.py:1033", "jnp.clip"),
    ("keras/src/losses/loss.py:148-159", "sum_over_batch_size"),  # implementations.py: the reduction
]


@pytest.mark.parametrize("citation, expected", CITATIONS)
def test_citation_points_at_the_modelled_code(citation, expected):
    path, _, span = citation.partition(":")
    assert expected in _lines(path, span), citation


@pytest.mark.parametrize("module", ["models.py", "findings.py", "implementations.py"])
def test_every_citation_is_checked(module):
    text = (ROOT / "xentdbg" / "losses" / module).read_text()
    cited = set(re.findall(r"((?:keras|tf_keras|tensorflow|jax|optax)/[\w/]+\.py:\d+(?:-\d+)?)", text))
    assert cited - {c for c, _ in CITATIONS} == set()


# --- case 1: the diagnosis' numbers come from these functions -------------------------------------------

CASE1_LOGITS = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from common import init_params, logits_fn, probs_fn
from xentdbg.data import DataSpec, load

info = load(DataSpec())
params = init_params(info.x.shape[1])
np.savez(sys.argv[2], z=np.asarray(logits_fn()(params, info.x)), p=np.asarray(probs_fn()(params, info.x)), y=info.y)
"""


@pytest.mark.slow
def test_case1_step0_losses_from_the_shared_models(tmp_path):
    """Case 1 at step 0 (README): Keras on TensorFlow's loss 39.6471 is
    the exact BCE on the logits, the "stable" JAX loss 6.46282 the BCE of probabilities clipped to
    [1e-6, float32(0.9999999)], as the diagnosis recomputes them."""
    out = tmp_path / "case1.npz"
    proc = subprocess.run([sys.executable, "-c", CASE1_LOGITS, str(CASE1), str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        z, p, y = (data[k].astype(np.float64) for k in ("z", "p", "y"))
    assert float(np.mean(m.binary_from_logits(y, z))) == pytest.approx(39.6471, abs=1e-4)
    stable = float(np.mean(m.binary_clipped(y, p, 1e-6, 0.9999999, float32=True)))
    assert stable == pytest.approx(6.46282, rel=2e-5)
    assert float(np.mean(m.binary_clipped(y, p, float32=True))) != pytest.approx(stable, rel=1e-3)  # Keras' eps differs
