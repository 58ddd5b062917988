"""Label probes: label smoothing on one side. Pure numpy, float64.

Label smoothing ``ε`` replaces the one-hot targets ``y`` by ``(1 - ε) y + ε / K`` over
``K`` classes (Keras ``categorical_crossentropy``, keras/src/losses/losses.py:2200-2204,
Keras 3.15; optax ``smooth_labels``, optax/losses/_smoothing.py:55). With softmax
cross-entropy averaged over a batch of ``N``, the gradient with respect to the logits is
``(p - target) / N`` per sample, so from the same weights (the cross-feed's view) the two
sides' gradients of the **output bias** differ by exactly

    Δg_b = g_B - g_A = ε_B - ε_A  times  (ȳ - 1/K)    (ȳ: the batch's class frequencies)

whatever the network below it. The probe fits ``Δg_b = ε (ȳ - 1/K)`` by least squares
across the ``K`` classes and names the cause when the residual is at float32 rounding.
It needs ``K >= 2`` (one binary output gives one number, which any difference fits) and
the step's labels (both sides trained on the in-order batch).
"""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt, ratio

RESIDUAL = 1e-3
"""Largest relative residual of the fit: float32 rounding of the bias gradients leaves
about 1e-6; a different cause leaves a difference that is not ``ε (ȳ - 1/K)``."""


def label_smoothing(ctx: Context) -> list[Finding]:
    """One side smooths its labels: the output bias gradients differ by ``ε (ȳ - 1/K)``."""
    if ctx.y is None or not ctx.agrees("inputs"):
        return []
    y = np.asarray(ctx.y, np.float64)
    if y.ndim != 2 or y.shape[1] < 2 or not np.allclose(y.sum(axis=1), 1.0):
        return []  # one-hot rows over K >= 2 classes only
    k = y.shape[1]
    target = y.mean(axis=0) - 1.0 / k
    biases = [(name, a, b) for name, a, b in ctx.param_triples("gradients") if np.shape(a) == np.shape(b) == (k,)]
    if not biases or not np.any(target):
        return []
    name, ga, gb = biases[-1]  # the output layer's bias: the last (K,) parameter
    delta = np.asarray(gb, np.float64) - np.asarray(ga, np.float64)
    eps, residual = ratio(delta, target)
    if not np.isfinite(eps) or residual > RESIDUAL or not 1e-4 <= abs(eps) < 1:
        return []
    side, other = ("B", "A") if eps > 0 else ("A", "B")
    ev = (f"{name}: B's gradient minus A's is ε·(ȳ − 1/K) in each of the {k} classes with ε = {fmt(eps, 4)} "
          f"(relative residual {residual:.1e}): the change label smoothing ε makes to the targets, "
          f"(1 − ε)·y + ε/K",
          "batch class frequencies ȳ: " + ", ".join(fmt(v, 3) for v in y.mean(axis=0)),
          f"losses A {fmt(ctx.a.loss)}, B {fmt(ctx.b.loss)}")
    return [Finding("label-smoothing", f"Side {side} smooths its labels by {fmt(abs(eps), 3)} more than side {other}",
                    ev, "Use the same label_smoothing on both sides (Keras losses' label_smoothing=, optax "
                        "smooth_labels).", fit=1.0,
                    numbers={"epsilon": abs(eps), "side": side, "residual": residual, "tensor": name})]
