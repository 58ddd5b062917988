"""Cross-entropy as each library computes it: numpy models of the source, in float64.

Each function is one formula and cites the file and line it follows: Keras 3.15.1,
tf_keras 2.21.0, TensorFlow 2.21.0, JAX 0.10.2, optax 0.2.8 (paths from ``site-packages``).
``t`` is ``y_true`` (one-hot or weighted rows for the categorical losses, one-hot rows for
the sparse ones), ``p`` probabilities, ``z`` logits; the classes lie on the last axis,
``N`` is the number of samples (``p[..., 0].size``) and ``M`` the number of elements.

The diagnosis of a replay (:mod:`xentdbg.diagnose.xent`) and ``xentdbg loss``
(:mod:`xentdbg.losses.findings`) both evaluate these functions, so they cannot disagree on
a formula. Pure numpy: no TensorFlow, no JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xentdbg.losses.inputs import BCE, CCE, SCCE, LossInputs

EPSILON = 1e-7  # keras.config.epsilon(): keras/src/backend/config.py:10 (_EPSILON); tf_keras/src/backend_config.py:26
LOW = np.float32(EPSILON)  # the clip bounds as the libraries hold them: float32
HIGH = np.float32(1.0 - EPSILON)  # 0.99999988: 1 - 1e-7 rounds to the float32 below it
Bound = float | np.floating[Any]  # a clip bound: a Python float, or as a library holds it

CLIP_SOURCE = {
    CCE: "keras/src/backend/tensorflow/nn.py:1372-1378, keras/src/backend/jax/nn.py:983-985, "
         "tf_keras/src/backend.py:5589-5594",
    BCE: "keras/src/backend/tensorflow/nn.py:1484-1489, keras/src/backend/jax/nn.py:1033-1036, "
         "tf_keras/src/backend.py:5828-5834",
    SCCE: "keras/src/backend/tensorflow/nn.py:1432-1440, keras/src/backend/jax/nn.py:1010-1012, "
          "tf_keras/src/backend.py:5733-5735",
}
FUSED_SOURCE = "tensorflow/python/ops/nn_grad.py:514-522"


# --- links and their logarithms -------------------------------------------------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``σ(z) = 1 / (1 + exp(-z))``: 0 where ``exp(-z)`` overflows, as in float arithmetic."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z))


def logsumexp(x: np.ndarray) -> np.ndarray:
    """``log Σ_c exp(x_c)`` over the last axis, kept, computed as ``m + log Σ_c exp(x_c - m)``
    with ``m = max_c x_c`` (0 where that maximum is not finite): no overflow. As
    ``jax.nn.logsumexp`` (jax/_src/ops/special.py:86-97)."""
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``log softmax(z)_c = z_c - logsumexp(z)``, exact for large logits."""
    return z - logsumexp(z)


def softmax(z: np.ndarray) -> np.ndarray:
    """``softmax(z)_c = exp(z_c - logsumexp(z))``: rows sum to 1."""
    return np.exp(log_softmax(z))


def onehot(labels: np.ndarray, classes: int) -> np.ndarray:
    """``t_c = [labels = c]`` on a new last axis of length ``classes``, float64."""
    return (np.asarray(labels)[..., None] == np.arange(classes)).astype(np.float64)


# --- the clip and its gradient --------------------------------------------------------------------


def clip(p: np.ndarray, lo: Bound = LOW, hi: Bound = HIGH, float32: bool = False) -> np.ndarray:
    """``clip(p) = min(max(p, lo), hi)`` (nan stays nan), by default to Keras' ``[eps, 1 - eps]``.

    ``float32``: round ``p`` and the bounds to float32 first, as a float32 framework holds
    them (the result is widened back to float64). TensorFlow: ``tf.clip_by_value``
    (tensorflow/python/ops/clip_ops.py:111-116); JAX: ``jnp.clip``
    (jax/_src/numpy/lax_numpy.py:3407-3409)."""
    if float32:
        return np.clip(np.asarray(p).astype(np.float32), np.float32(lo), np.float32(hi)).astype(np.float64)
    return np.clip(p, lo, hi)


def clip_pass(x: np.ndarray, tie: float) -> np.ndarray:
    """Gradient factor of ``clip(x, LOW, HIGH)``: 1 inside, 0 outside, ``tie`` on a bound.

    TensorFlow: clip_by_value is Minimum then Maximum (tensorflow/python/ops/clip_ops.py:111-116),
    whose gradients pass at ties (``_MaximumGrad``/``_MinimumGrad``,
    tensorflow/python/ops/math_grad.py:1583-1592): tie = 1. JAX: jnp.clip is maximum then
    minimum (jax/_src/numpy/lax_numpy.py:3407-3409), which split a tie: tie = 0.5.
    """
    return np.where((x > LOW) & (x < HIGH), 1.0, np.where((x == LOW) | (x == HIGH), tie, 0.0))


# --- from logits: exact -----------------------------------------------------------------------------


def binary_from_logits(t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Element-wise ``-(t log σ(z) + (1-t) log(1 - σ(z))) = max(z, 0) - z t + log(1 + exp(-|z|))``.

    The overflow-free form of ``tf.nn.sigmoid_cross_entropy_with_logits``
    (tensorflow/python/ops/nn_impl.py:144-145), which Keras on TensorFlow calls
    (keras/src/backend/tensorflow/nn.py:1479) as does tf_keras (tf_keras/src/backend.py:5824);
    Keras on JAX and optax write it with ``log_sigmoid`` (keras/src/backend/jax/nn.py:1029-1031,
    optax/losses/_classification.py:80-83)."""
    return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))


def categorical_from_logits(t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per sample ``l = -Σ_c t_c log softmax(z)_c``.

    ``tf.nn.softmax_cross_entropy_with_logits`` (keras/src/backend/tensorflow/nn.py:1364,
    tf_keras/src/backend.py:5581); ``jax.nn.log_softmax`` (keras/src/backend/jax/nn.py:981 and
    1008); ``optax.softmax_cross_entropy`` (optax/losses/_classification.py:295-296) and, for
    integer labels ``t = onehot(y)``, ``logsumexp(z) - z_y`` (optax/losses/_classification.py:400-404)."""
    return -(t * log_softmax(z)).sum(-1)


def fused_softmax_gradient(t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``∂ mean(l) / ∂z`` as TensorFlow's fused softmax cross-entropy returns it: ``(softmax(z) - t) / N``.

    The op's gradient is its second output (tensorflow/python/ops/nn_grad.py:514-522), computed
    assuming ``Σ_c t_c = 1``; the exact gradient of :func:`categorical_from_logits` is
    ``(softmax(z) Σ_c t_c - t) / N``."""
    return (softmax(z) - t) / z[..., 0].size


# --- from probabilities: Keras 3 and tf_keras clip ----------------------------------------------------


def binary_clipped(t: np.ndarray, p: np.ndarray, lo: Bound = LOW, hi: Bound = HIGH, float32: bool = False,
                   log_eps: float = 0.0) -> np.ndarray:
    """Element-wise ``c = clip(p, lo, hi)``, ``l = -(t log(c + e) + (1-t) log(1 - c + e))``, ``e = log_eps``.

    Keras 3 (``e = 0``): keras/src/backend/tensorflow/nn.py:1484-1489,
    keras/src/backend/jax/nn.py:1033-1036. ``keras.losses.binary_crossentropy`` averages it
    over the last axis (keras/src/losses/losses.py:2414-2417). See :func:`tf_keras_binary`
    for ``e = eps``."""
    c = clip(p, lo, hi, float32)
    return -(t * np.log(c + log_eps) + (1 - t) * np.log(1 - c + log_eps))


def tf_keras_binary(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """tf_keras: ``c = clip(p, eps, 1 - eps)``, ``l = -(t log(c + eps) + (1-t) log(1 - c + eps))``.

    The epsilon inside the log (tf_keras/src/backend.py:5828-5834) lowers each term by about
    ``eps / c``; Keras 3 dropped it. ``eps`` is added in float32: ``float(LOW)``."""
    return binary_clipped(t, p, log_eps=float(LOW))


def binary_clipped_gradient(t: np.ndarray, p: np.ndarray, tie: float, log_eps: float = 0.0) -> np.ndarray:
    """``∂ mean(l) / ∂p = pass(p) (-t / (c + e) + (1-t) / (1 - c + e)) / M`` for :func:`binary_clipped`,
    with ``pass`` the clip's gradient factor (:func:`clip_pass`)."""
    c = clip(p)
    return clip_pass(p, tie) * (-t / (c + log_eps) + (1 - t) / (1 - c + log_eps)) / np.broadcast(t, p).size


def categorical_clipped(t: np.ndarray, p: np.ndarray, lo: Bound = LOW, hi: Bound = HIGH,
                        float32: bool = False) -> np.ndarray:
    """Per sample ``q = p / Σ_c p_c``, ``c = clip(q, lo, hi)``, ``l = -Σ_c t_c log c_c``.

    keras/src/backend/tensorflow/nn.py:1372-1378, keras/src/backend/jax/nn.py:983-986,
    tf_keras/src/backend.py:5589-5594."""
    q = p / p.sum(-1, keepdims=True)
    c = clip(q, lo, hi, float32)
    return -(t * np.log(c)).sum(-1)


def categorical_clipped_gradient(t: np.ndarray, p: np.ndarray, tie: float) -> np.ndarray:
    """``∂ mean(l) / ∂p = (g - Σ_c g_c q_c) / Σp`` with ``g = pass(q) (-t / (N c))`` for
    :func:`categorical_clipped`: the chain rule through ``q = p / Σp``."""
    s = p.sum(-1, keepdims=True)
    q = p / s
    g = clip_pass(q, tie) * -t / (p[..., 0].size * clip(q))
    return (g - (g * q).sum(-1, keepdims=True)) / s


def sparse_clip_then_normalize(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """TensorFlow's sparse cross-entropy: ``c = clip(p)``, then ``log c`` into
    ``tf.nn.sparse_softmax_cross_entropy_with_logits``: ``l = -log(c_y / Σ_c c_c)``, ``t = onehot(y)``.

    keras/src/backend/tensorflow/nn.py:1432-1440, tf_keras/src/backend.py:5733-5735 and 5781."""
    c = clip(p)
    return -np.log((t * c).sum(-1) / c.sum(-1))


def sparse_clip_then_normalize_gradient(t: np.ndarray, p: np.ndarray, tie: float) -> np.ndarray:
    """``∂ mean(l) / ∂p = pass(p) (1 / Σc - [c = c_y] / c_y) / N`` for :func:`sparse_clip_then_normalize`."""
    c = clip(p)
    return clip_pass(p, tie) * ((1 / c.sum(-1, keepdims=True) - t / np.where(t > 0, c, 1.0)) / p[..., 0].size)


def sparse_normalize_then_clip(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Keras on JAX: ``q = p / Σ_c p_c``, ``c = clip(q)``, ``l = -log c_y``, ``t = onehot(y)``.

    keras/src/backend/jax/nn.py:1010-1014."""
    return -np.log((t * clip(p / p.sum(-1, keepdims=True))).sum(-1))


def sparse_normalize_then_clip_gradient(t: np.ndarray, p: np.ndarray, tie: float) -> np.ndarray:
    """``∂ mean(l) / ∂p = (g - Σ_c g_c q_c) / Σp`` with ``g = pass(q) (-t / (N c_y))`` for
    :func:`sparse_normalize_then_clip`."""
    s = p.sum(-1, keepdims=True)
    q = p / s
    g = clip_pass(q, tie) * -t / (p[..., 0].size * np.where(t > 0, clip(q), 1.0))
    return (g - (g * q).sum(-1, keepdims=True)) / s


# --- the float64 reference --------------------------------------------------------------------------


def reference(loss: str, y_true: np.ndarray, y_pred: np.ndarray,
              from_logits: bool) -> tuple[np.ndarray, float, np.ndarray]:
    """The textbook loss and its gradient in float64, no clipping: ``(per_sample, reduced, gradient)``.

    With ``t = y_true``, ``N`` the number of per-sample losses and ``M`` the number of elements:

    - categorical, probabilities ``p``: ``l_i = -Σ_c t_ic log p_ic``, ``∂L/∂p = -t / (N p)``
      (``0 · log 0`` is ``0 · (-inf) = nan`` in IEEE arithmetic, as the formula is written);
      logits ``z``: ``l_i = Σ_c t_ic (logsumexp(z_i) - z_ic)``, ``∂L/∂z = (softmax(z) Σ_c t_ic - t) / N``.
    - binary: ``l_i = mean_c -(t log p + (1-t) log(1-p))``, ``∂L/∂p = (-t/p + (1-t)/(1-p)) / M``;
      logits: ``max(z, 0) - z t + log(1 + exp(-|z|))``, ``∂L/∂z = (sigmoid(z) - t) / M``.
    - sparse, label ``y``: ``l_i = -log p_iy``, ``∂L/∂p_iy = -1 / (N p_iy)``, 0 elsewhere;
      logits: ``logsumexp(z_i) - z_iy``, ``∂L/∂z = (softmax(z) - onehot(y)) / N``.

    ``L = mean(l)``. The inputs are the float32 values the libraries receive, widened.
    """
    t = np.asarray(y_true, dtype=np.float64)
    x = np.asarray(y_pred, dtype=np.float64)
    with np.errstate(all="ignore"):
        if loss == BCE:
            if from_logits:
                elem = binary_from_logits(t, x)
                grad = (sigmoid(x) - t) / x.size
            else:
                elem = -(t * np.log(x) + (1 - t) * np.log(1 - x))
                grad = (-t / x + (1 - t) / (1 - x)) / x.size
            per = elem.mean(-1)
            return per, per.mean(), grad
        if loss == SCCE:
            t = onehot(np.asarray(y_true).reshape(x.shape[:-1]), x.shape[-1])
        n = x[..., 0].size
        if from_logits:
            per = categorical_from_logits(t, x)
            grad = (softmax(x) * t.sum(-1, keepdims=True) - t) / n
        elif loss == SCCE:  # -log p[y]: the label's element only, no 0·log 0 from the others
            p_y = np.take_along_axis(x, np.asarray(y_true).reshape(x.shape[:-1] + (1,)).astype(np.intp), -1)
            per = -np.log(p_y[..., 0])
            grad = np.where(t > 0, -1 / (n * p_y), 0.0)
        else:
            per = -(t * np.log(x)).sum(-1)
            grad = -t / (n * x)
        return per, per.mean(), grad


# --- which model is whose ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryModel:
    """What one implementation's source computes on some inputs: the formula in words, the
    lines it follows, and the per-sample losses and gradient of the mean it gives."""

    description: str
    source: str
    per_sample: np.ndarray
    gradient: np.ndarray


def library_model(key: str, inputs: LossInputs) -> LibraryModel:
    """The model of implementation ``key`` (``keras-tf``, ``keras-jax``, ``tf-keras``, ``optax``) on ``inputs``.

    Logits: every library is exact (:func:`reference`), except the gradient of TensorFlow's
    fused categorical op (:func:`fused_softmax_gradient`). Probabilities: the clipped formulas
    above; ``tie`` (:func:`clip_pass`) is 0.5 on JAX, 1 on TensorFlow."""
    loss, fl = inputs.loss, inputs.from_logits
    t = np.asarray(inputs.y_true, dtype=np.float64)
    p = np.asarray(inputs.y_pred, dtype=np.float64)
    tie = 0.5 if key == "keras-jax" else 1.0
    with np.errstate(all="ignore"):
        if fl:
            per, _, grad = reference(loss, inputs.y_true, inputs.y_pred, True)
            if loss == CCE and key in ("keras-tf", "tf-keras"):
                return LibraryModel("fused softmax cross-entropy: gradient softmax − y_true", FUSED_SOURCE,
                                    per, fused_softmax_gradient(t, p))
            return LibraryModel("exact log-softmax / log-sigmoid", "", per, grad)
        if loss == SCCE:
            t = onehot(inputs.y_true.reshape(p.shape[:-1]), p.shape[-1])
        if loss == CCE:
            return LibraryModel("p/Σp → clip [1e-07, 1−1e-07] → −Σ t·log", CLIP_SOURCE[CCE],
                                categorical_clipped(t, p), categorical_clipped_gradient(t, p, tie))
        if loss == BCE:
            if key == "tf-keras":
                return LibraryModel("clip [1e-07, 1−1e-07] → −(t·log(p+1e-07) + (1−t)·log(1−p+1e-07))",
                                    CLIP_SOURCE[BCE], tf_keras_binary(t, p).mean(-1),
                                    binary_clipped_gradient(t, p, tie, float(LOW)))
            return LibraryModel("clip [1e-07, 1−1e-07] → −(t·log p + (1−t)·log(1−p))", CLIP_SOURCE[BCE],
                                binary_clipped(t, p).mean(-1), binary_clipped_gradient(t, p, tie))
        if key == "keras-jax":
            return LibraryModel("p/Σp → clip → −log p[y]", "keras/src/backend/jax/nn.py:1010-1014",
                                sparse_normalize_then_clip(t, p), sparse_normalize_then_clip_gradient(t, p, tie))
        return LibraryModel("clip → log → sparse softmax cross-entropy (= −log(c[y]/Σc))",
                            "keras/src/backend/tensorflow/nn.py:1432-1440",
                            sparse_clip_then_normalize(t, p), sparse_clip_then_normalize_gradient(t, p, tie))
