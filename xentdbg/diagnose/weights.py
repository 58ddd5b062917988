"""Loss-weight probe: class weights or per-sample weights on one side. Pure numpy, float64.

A weighted cross-entropy is ``L = Σ_i w_i ℓ_i / N`` over a batch of ``N``: Keras' default
``reduction="sum_over_batch_size"`` multiplies the per-sample losses by ``sample_weight``
and divides their sum by the number of losses, not by ``Σ w``
(keras/src/losses/loss.py:164-194 ``reduce_weighted_values``, :140-161 ``reduce_values``,
Keras 3.15; ``"mean_with_sample_weight"`` divides by ``Σ w``: its weights are then
recovered as ``w_i N / Σ w``), and ``fit(class_weight=c)`` is the per-sample weight
``w_i = c[y_i]`` (keras/src/trainers/data_adapters/data_adapter_utils.py:120-135, called by
array_data_adapter.py:66-74). With a softmax output ``p_i = softmax(z_i)`` (or one
sigmoid unit) and one-hot labels ``y_i``, the gradient with respect to the logits is
``w_i (p_i - y_i) / N``, so the output Dense layer ``z_i = h_i W + b`` gets

    g_b = Σ_i w_i r_i / N,    g_W = Σ_i w_i h_i r_iᵀ / N,    r_i = p_i - y_i,

linear in the weights. Each side's weights are solved from its own record (its outputs
``p``, the input ``h`` of its last Dense layer, its gradients of that layer) by least
squares over the ``(H + 1) K`` gradient elements:

- per class (``w_i = c[y_i]``, one unknown per class in the batch), and when that does
  not fit,
- per sample (``N`` unknowns; only where the system has full column rank, ``N`` well
  below ``(H + 1) K``).

A side without weights comes out with every weight 1 to float32 rounding (relative
residual about 1e-7). The cause is named when both sides fit (relative residual below
:data:`RESIDUAL`), the recovered weights reproduce the losses' difference
``L_B - L_A = Σ_i (w^B_i ℓ^B_i - w^A_i ℓ^A_i) / N`` (a penalty both sides add cancels), and
B's weights are not A's times one constant (that is a loss scale, see
:func:`xentdbg.diagnose.gradients.loss_scale`). Needs the step's labels (both sides
trained on the in-order batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xentdbg.diagnose.context import Context, Finding, Side, fmt, ratio
from xentdbg.diagnose.xent import as_probabilities, find_logits
from xentdbg.losses.models import (
    binary_clipped,
    binary_from_logits,
    categorical_clipped,
    categorical_from_logits,
)

RESIDUAL = 1e-3
"""Largest relative residual of a side's fit: what the weights leave of its output-layer
gradients, relative to the smaller of those gradients and the two sides' difference in
them (so that a small difference must be explained as closely as a large one). float32
rounding leaves about 2e-7 (examples/causes/fit_class_weight.py); label smoothing 0.1 on
one side leaves 0.2, probabilities passed as logits 2e-3."""

SAME = 1e-3
"""Two recovered weights are the same weight when they differ by less than this, relative
to the largest weight (the fits recover them to about 1e-6)."""

LOSS_MATCH = 1e-4
"""The recovered weights must give the losses' difference to this, relative to the losses."""

_MAX_ROWS = 20_000  # gradient elements in one least-squares system


@dataclass(frozen=True)
class _Output:
    """One side's last Dense layer: its input ``h`` (N, H), the residuals ``r = p - y`` (N, K),
    the per-sample losses ``ℓ`` and the gradients ``d`` flattened as the rows of the system."""

    h: np.ndarray
    r: np.ndarray
    losses: np.ndarray
    d: np.ndarray
    names: tuple[str, str]


@dataclass(frozen=True)
class _Fit:
    """Recovered weights of one side: per class (``per == "class"``, one per entry of
    ``classes``) or per sample; ``sample`` is the per-sample vector either way."""

    per: str
    weights: np.ndarray
    sample: np.ndarray
    residual: float
    uncertainty: float  # |residual vector| / smallest singular value: a bound on the weights' error
    equations: int


def _labels(y: np.ndarray) -> np.ndarray | None:
    """Class index per sample: the argmax of one-hot rows over ``K >= 2``, or the 0/1 label of one column."""
    if y.ndim != 2 or not np.all(np.isfinite(y)):
        return None
    if y.shape[1] == 1:
        labels = np.round(y[:, 0])
        return labels.astype(int) if np.all((labels == 0) | (labels == 1)) and np.allclose(labels, y[:, 0]) else None
    if not np.allclose(y.sum(axis=1), 1.0) or not np.allclose(y.max(axis=1), 1.0):
        return None  # one-hot rows only (soft labels have no class to weight)
    return y.argmax(axis=1)


def _last_dense(side: Side, k: int) -> tuple[str, np.ndarray, str, np.ndarray] | None:
    """The side's last ``(H, K)`` kernel gradient followed by its ``(K,)`` bias gradient."""
    grads = side.tensors("gradients")
    for (kname, kernel), (bname, bias) in reversed(list(zip(grads, grads[1:]))):
        if kernel.ndim == 2 and kernel.shape[1] == k and bias.shape == (k,):
            return kname, np.asarray(kernel, np.float64), bname, np.asarray(bias, np.float64)
    return None


def _output(side: Side, x: np.ndarray | None, y: np.ndarray) -> _Output | None:
    """``p``, ``h``, ``ℓ`` and the output layer's gradients of one side, when its record has them.

    The last activation is the output: probabilities (rows summing to 1, or one column in
    [0, 1]) or else logits, which the softmax (sigmoid) turns into ``p``."""
    acts = side.activations
    if not acts:
        return None
    n, k = y.shape
    out = np.asarray(acts[-1][1], np.float64)
    if out.shape != (n, k) or not np.all(np.isfinite(out)):
        return None
    binary = k == 1
    p, z = as_probabilities(out, y)
    if z is None:
        found = find_logits(side, x, "binary" if binary else "categorical")
        z = found[0] if found else None
    if z is not None:
        losses = (binary_from_logits(y, z) if binary else categorical_from_logits(y, z)).reshape(n, -1).mean(axis=1)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            losses = (binary_clipped(y, p, float32=True) if binary
                      else categorical_clipped(y, p, float32=True)).reshape(n, -1).mean(axis=1)
    dense = _last_dense(side, k)
    if dense is None or not np.all(np.isfinite(losses)):
        return None
    kname, gk, bname, gb = dense
    inputs = [np.asarray(a, np.float64) for _, a in reversed(acts[:-1])]
    inputs += [np.asarray(x, np.float64)] if x is not None else []
    h = next((v.reshape(n, -1) for v in inputs if v.shape[0] == n and v[0].size == gk.shape[0]), None)
    if h is None or not np.all(np.isfinite(h)) or not np.all(np.isfinite(gk)) or not np.all(np.isfinite(gb)):
        return None
    rows = min(h.shape[1], max(1, _MAX_ROWS // k))  # the kernel rows of the first input features
    d = np.concatenate([gk[:rows].ravel(), gb])
    return _Output(h[:, :rows], p - y, losses, d, (kname, bname))


def _design(o: _Output) -> np.ndarray:
    """Per-sample columns ``[vec(h_i r_iᵀ); r_i] / N``: ``d = M w`` for per-sample weights ``w``."""
    n = o.r.shape[0]
    kernel = np.einsum("ni,nj->ijn", o.h, o.r).reshape(-1, n)
    return np.vstack([kernel, o.r.T]) / n


def _solve(m: np.ndarray, d: np.ndarray, scale: float) -> tuple[np.ndarray, float, float, bool]:
    """Least-squares ``w``, the residual relative to ``scale``, an error bound on ``w`` (the
    residual's norm over the smallest singular value), and whether ``m`` has full column rank."""
    w, _, rank, sv = np.linalg.lstsq(m, d, rcond=None)
    left = float(np.linalg.norm(m @ w - d))
    residual = left / scale if scale > 0 else float("inf")
    full = rank == m.shape[1] and sv.size > 0 and sv[-1] > 0
    return w, residual, (left / float(sv[-1]) if full else float("inf")), bool(full)


def _fit(o: _Output, labels: np.ndarray, classes: np.ndarray, difference: float) -> _Fit | None:
    """The side's weights per class, else per sample, when one of them fits its gradients
    (residual relative to the smaller of ``|d|`` and ``difference``, see :data:`RESIDUAL`)."""
    m = _design(o)
    scale = min(float(np.linalg.norm(o.d)), difference)
    per_class = m @ (labels[:, None] == classes[None, :]).astype(np.float64)
    c, residual, error, full = _solve(per_class, o.d, scale)
    if full and residual <= RESIDUAL:
        return _Fit("class", c, c[np.searchsorted(classes, labels)], residual, error, m.shape[0])
    if m.shape[1] >= m.shape[0]:
        return None  # N unknowns need more equations than that
    w, residual, error, full = _solve(m, o.d, scale)
    if full and residual <= RESIDUAL:
        return _Fit("sample", w, w, residual, error, m.shape[0])
    return None


def _groups(fit: _Fit, classes: np.ndarray) -> str:
    """``"class 3 by 2, the others by 1"``: a side's class weights, the most common value last."""
    scale = float(np.max(np.abs(fit.weights)))
    values: list[tuple[float, list[int]]] = []
    for cls, v in zip(classes, fit.weights):
        for value, members in values:
            if abs(v - value) <= SAME * scale:
                members.append(int(cls))
                break
        else:
            values.append((float(v), [int(cls)]))
    if len(values) == 1:
        value = values[0][0]
        return "1 for every class (unweighted)" if abs(value - 1) <= SAME else f"every class by {fmt(value, 4)}"
    values.sort(key=lambda t: len(t[1]))
    *few, (common, _) = values
    parts = [f"class{'es' if len(members) > 1 else ''} {', '.join(map(str, members))} by {fmt(value, 4)}"
             for value, members in few]
    return "; ".join(parts) + f"; the others by {fmt(common, 4)}"


def _samples(fit: _Fit) -> str:
    """A per-sample weight vector in a few numbers, the batch's first weights included."""
    w = fit.sample
    ones = int(np.count_nonzero(np.abs(w - 1) <= SAME * max(1.0, float(np.max(np.abs(w))))))
    return (f"{fmt(float(w.min()), 4)} to {fmt(float(w.max()), 4)}, mean {fmt(float(w.mean()), 4)}, {ones} of "
            f"{w.size} equal to 1; the batch's first: " + ", ".join(fmt(float(v), 4) for v in w[:5]))


def _unweighted(fit: _Fit) -> bool:
    return bool(np.all(np.abs(fit.sample - 1) <= SAME * max(1.0, float(np.max(np.abs(fit.sample))))))


def _common(weights: np.ndarray) -> float:
    """The value most weights share (to :data:`SAME`)."""
    scale = float(np.max(np.abs(weights)))
    counts = [int(np.count_nonzero(np.abs(weights - v) <= SAME * scale)) for v in weights]
    return float(weights[int(np.argmax(counts))])


def _class_weight(fit: _Fit, classes: np.ndarray) -> str:
    """The ``class_weight`` dict that gives a side's class weights, relative to its most common weight."""
    scale = float(np.max(np.abs(fit.weights)))
    common = _common(fit.weights)
    picked = {int(c): float(f"{v / common:.6g}") for c, v in zip(classes, fit.weights)
              if abs(v - common) > SAME * scale}
    return f"class_weight={picked}" + ("" if abs(common - 1) <= SAME else f" with the loss scaled by {fmt(common, 4)}")


def sample_weights(ctx: Context) -> list[Finding]:
    """Class or sample weights on one side: each side's output-layer gradients are
    ``Σ_i w_i (p_i - y_i) [h_i; 1] / N`` for weights ``w`` that differ between the sides."""
    if ctx.y is None or not ctx.agrees("inputs") or (ctx.agrees("loss") and ctx.agrees("gradients")):
        return []
    y = np.asarray(ctx.y, np.float64)
    labels = _labels(y)
    if labels is None:
        return []
    classes = np.unique(labels)
    oa, ob = _output(ctx.a, ctx.x, y), _output(ctx.b, ctx.x, y)
    if oa is None or ob is None or oa.d.shape != ob.d.shape:
        return []
    difference = float(np.linalg.norm(ob.d - oa.d))
    fa, fb = _fit(oa, labels, classes, difference), _fit(ob, labels, classes, difference)
    if fa is None or fb is None:
        return []
    scale = float(max(np.max(np.abs(fa.sample)), np.max(np.abs(fb.sample))))
    factor, _ = ratio(fb.sample, fa.sample)
    if not np.isfinite(factor) or np.max(np.abs(fb.sample - factor * fa.sample)) <= SAME * scale:
        return []  # the same weights up to one constant: nothing, or a loss scale
    n = y.shape[0]
    predicted = float(np.sum(fb.sample * ob.losses - fa.sample * oa.losses)) / n
    observed = ctx.b.loss - ctx.a.loss
    if abs(predicted - observed) > LOSS_MATCH * max(abs(ctx.a.loss), abs(ctx.b.loss), 1e-12):
        return []
    fits = {"A": fa, "B": fb}
    per = "class" if fa.per == fb.per == "class" else "sample"
    side = "B" if _unweighted(fa) else "A" if _unweighted(fb) else "both"
    kname, bname = ob.names
    ev = [f"side {s}'s gradients of {kname} and {bname} are Σ_i w_i (p_i − y_i) [h_i; 1] / N with "
          + (f"w_i = c[y_i], c: {_groups(f, classes)}" if f.per == "class" else f"per-sample w: {_samples(f)}")
          + f"; relative residual {f.residual:.1e} over {f.equations} elements, weights to ±{f.uncertainty:.1e}"
          for s, f in fits.items()]
    ev.append(f"the weights give the losses' difference: Σ_i (w^B_i ℓ^B_i − w^A_i ℓ^A_i) / N = {fmt(predicted)}, "
              f"measured L_B − L_A = {fmt(observed)} ({fmt(ctx.a.loss)} vs {fmt(ctx.b.loss)})")
    if per == "class":
        ev.append("samples per class in the batch: "
                  + ", ".join(f"{int(c)}: {int(np.count_nonzero(labels == c))}" for c in classes))
    numbers: dict = {"side": side, "per": per, "residual": max(fa.residual, fb.residual), "n": n,
                     "loss_difference": {"predicted": predicted, "measured": observed}}
    if per == "class":
        numbers["class_weights"] = {s: {str(int(c)): float(v) for c, v in zip(classes, f.weights)}
                                    for s, f in fits.items()}
    else:
        numbers["sample_weights"] = {s: [float(v) for v in f.sample] for s, f in fits.items()}
    fix = ("Pass the same class_weight / sample_weight on both sides, or none (in a hand-written loop: the same "
           "factors on the per-sample losses before the mean).")
    if side == "both":
        title = f"The two sides weight the loss {'per class' if per == 'class' else 'per sample'} differently"
    elif per == "class":
        weighted = fits[side]
        title = f"Side {side} weights the loss per class: {_groups(weighted, classes)} (side {'AB'[side == 'A']} " \
                "unweighted)"
        fix += f" Side {side} trains as with {_class_weight(weighted, classes)}."
    else:
        w = fits[side].sample
        title = (f"Side {side} weights the loss per sample, by {fmt(float(w.min()), 3)} to {fmt(float(w.max()), 3)} "
                 f"(side {'AB'[side == 'A']} unweighted)")
    return [Finding("sample-weights", title, tuple(ev), fix, fit=1.0, numbers=numbers)]
