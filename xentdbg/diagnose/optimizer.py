"""Optimizer probe (cause 9): gradients agree, the updates (or weights) after the step do not. Infer
each side's effective update from ``dw = w_after - w_before`` and the gradient ``g``.

- SGD: ``dw = -lr g`` (``lr = -<dw, g> / <g, g>``, residual ~ 0): the learning-rate ratio;
  at step 0 a ratio of ``1 + m`` is Nesterov vs plain momentum ``m`` (Nesterov's first
  step is ``-(1 + m) lr g``, keras/src/optimizers/sgd.py ~L112).
- Decoupled weight decay: ``dw = -lr g - lr wd w``.
- Adam at its first step: ``dw = -lr g / (|g| + eps_eff)``; elements with large ``|g|``
  move by ``lr``, small ones reveal ``eps_eff``. Keras adds ``epsilon`` to the
  uncorrected ``sqrt(v)`` (keras/src/optimizers/adam.py ~L117-135), so its effective
  epsilon at step t is ``epsilon / sqrt(1 - beta_2^t)``; optax adds ``eps`` after bias
  correction.
"""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt, ratio

_TOL = 1e-3
_MOMENTA = (0.9, 0.99, 0.95, 0.8, 0.5)
# Two fitted learning rates this close are one: each is -<dw, g>/<g, g> over float32 updates
# rounded at the weights' ulp, good to about 1e-6 relative at the sizes seen here.
_SAME_LR = 1e-5


def sgd_learning_rate(dws, gs):
    """The one ``lr`` with ``dw = -lr g`` on every tensor (least squares, residual and spread
    within 1e-3), else None."""
    fits = [ratio(-dw, g) for dw, g in zip(dws, gs)]
    if all(np.isfinite(lr) and res <= _TOL for lr, res in fits):
        lrs = [lr for lr, _ in fits]
        if max(lrs) - min(lrs) <= _TOL * max(abs(v) for v in lrs):
            return float(np.median(lrs))
    return None


def _decay(dws, gs, ws):
    """``dw = -a g - b w`` by least squares over all tensors: (lr, lr * wd) or None."""
    g = np.concatenate([np.ravel(v) for v in gs])
    w = np.concatenate([np.ravel(v) for v in ws])
    d = np.concatenate([np.ravel(v) for v in dws])
    m = np.stack([-g, -w], axis=1)
    coef, *_ = np.linalg.lstsq(m, d, rcond=None)
    res = float(np.linalg.norm(m @ coef - d) / max(float(np.linalg.norm(d)), 1e-30))
    return (float(coef[0]), float(coef[1])) if res <= _TOL and abs(coef[1]) > 1e-12 else None


def _adam_first(dws, gs):
    """``(lr, eps_eff)`` when ``dw ≈ -lr g / (|g| + eps)``, else None."""
    d = np.concatenate([np.ravel(v) for v in dws])
    g = np.concatenate([np.ravel(v) for v in gs])
    big = np.abs(g) >= np.quantile(np.abs(g), 0.9)
    if not np.any(big) or np.any(np.sign(d[big]) == np.sign(g[big])):
        return None
    lr = float(np.median(np.abs(d[big])))
    if lr == 0 or np.max(np.abs(d)) > 1.01 * lr:
        return None
    small = (np.abs(d) < 0.9 * lr) & (np.abs(d) > 0)
    if not np.any(small):
        return lr, 0.0
    eps = float(np.median(np.abs(g[small]) * (lr / np.abs(d[small]) - 1)))
    model = -lr * g / (np.abs(g) + eps)
    res = float(np.linalg.norm(model - d) / max(float(np.linalg.norm(d)), 1e-30))
    return (lr, eps) if res <= 0.05 else None


def optimizer_update(ctx: Context) -> list[Finding]:
    if (ctx.agrees("weights") and ctx.agrees("updates")) or not ctx.agrees("gradients") or not ctx.agrees("loss"):
        return []
    grads = ctx.param_triples("gradients")
    after = ctx.param_triples("weights")
    before = ctx.before_triples()
    if not grads or len(after) != len(grads) or len(before) != len(grads):
        return []
    gs = [np.asarray(g, np.float64) for _, g, _ in grads]
    wa = [np.asarray(w, np.float64) for _, w, _ in before]
    wb = [np.asarray(w, np.float64) for _, _, w in before]
    dwa = [np.asarray(w1, np.float64) - w0 for (_, w1, _), w0 in zip(after, wa)]
    dwb = [np.asarray(w1, np.float64) - w0 for (_, _, w1), w0 in zip(after, wb)]
    paired = {name for name, _, _ in after}
    moved = [t for t in ctx.divergent("updates") or ctx.divergent("weights") if t.name_a in paired]
    if not moved:
        return []  # only tensors paired across trainable and frozen differ (diagnose/frozen.py)
    ev = [f"gradients agree in step {ctx.step.step}; the {moved[0].phase} differ "
          f"({', '.join(t.name_a for t in moved)})"]
    lr_a, lr_b = sgd_learning_rate(dwa, gs), sgd_learning_rate(dwb, gs)
    if lr_a is not None and lr_b is not None:
        q = lr_b / lr_a
        if abs(q - 1) < _SAME_LR:
            return []  # the same learning rate: this is not what differs
        ev.append(f"each side's update is -lr * gradient on every tensor: effective lr A {fmt(lr_a, 4)}, "
                  f"B {fmt(lr_b, 4)} (B / A = {fmt(q, 6)})")
        momentum = next((m for m in _MOMENTA if ctx.step.step == 0 and
                         min(abs(q / (1 + m) - 1), abs(q * (1 + m) - 1)) < 1e-4), None)
        if momentum is not None:
            nesterov = "A" if q < 1 else "B"
            ev.append(f"{fmt(max(q, 1 / q), 6)} = 1 + {momentum}: the first step of Nesterov momentum {momentum} is "
                      f"-(1 + m) lr g, of plain momentum -lr g; side {nesterov} looks like Nesterov")
            return [Finding("optimizer", f"Nesterov vs plain momentum ({momentum}): side {nesterov} uses Nesterov",
                            tuple(ev), "Use the same momentum form on both sides (SGD(momentum=..., nesterov=...)).",
                            numbers={"lr_a": lr_a, "lr_b": lr_b, "ratio": q, "momentum": momentum})]
        return [Finding("optimizer", f"Learning rates differ: A {fmt(lr_a, 4)}, B {fmt(lr_b, 4)}", tuple(ev),
                        "Use the same learning rate on both sides "
                        "(note: compile('sgd') means SGD(learning_rate=0.01)).",
                        numbers={"lr_a": lr_a, "lr_b": lr_b, "ratio": q})]
    shapes = {}
    for label, dws, ws, lr in (("A", dwa, wa, lr_a), ("B", dwb, wb, lr_b)):
        if lr is not None:
            shapes[label] = f"-lr g with lr {fmt(lr, 4)}"
            continue
        decay = _decay(dws, gs, ws)
        if decay is not None:
            shapes[label] = (f"-lr g - lr wd w with lr {fmt(decay[0], 4)}, wd {fmt(decay[1] / decay[0], 4)} "
                             "(decoupled weight decay)")
            continue
        adam = _adam_first(dws, gs) if ctx.step.step == 0 else None
        if adam is not None:
            shapes[label] = (f"-lr g / (|g| + eps) with lr {fmt(adam[0], 4)}, effective eps {fmt(adam[1], 3)} "
                             "(Adam's first step)")
            continue
        shapes[label] = "not a form xentdbg recognises"
    for label, text in shapes.items():
        ev.append(f"side {label}'s update: {text}")
    if all("Adam" in v for v in shapes.values()):
        ev.append("Keras adds epsilon to the uncorrected sqrt(v): at step t its effective epsilon is "
                  "epsilon / sqrt(1 - beta_2^t), 1e-7 / sqrt(0.001) = 3.16e-6 at the first step; optax adds eps "
                  "(1e-8) after bias correction")
        return [Finding("optimizer", "Adam's epsilon enters differently on the two sides", tuple(ev),
                        "Match the epsilon convention: optax.adam(eps=0, eps_root=...) or scale Keras' epsilon; "
                        "for example optax.adam(lr, eps=1e-7 / sqrt(1 - b2**t)) reproduces Keras at step t.",
                        numbers={"updates": shapes})]
    if all(v == "not a form xentdbg recognises" for v in shapes.values()):
        return [Finding("optimizer", "The optimizers differ (update rule not identified)", tuple(ev),
                        "Use the same optimizer and hyperparameters on both sides.", fit=0.6)]
    return [Finding("optimizer", "The optimizers apply different updates to the same gradients", tuple(ev),
                    "Use the same optimizer and hyperparameters on both sides; for Adam, note that Keras adds epsilon "
                    "before bias correction (effective eps/sqrt(1-beta_2^t)), optax after.",
                    numbers={"updates": shapes})]
