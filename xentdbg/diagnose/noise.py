"""Numeric-noise probe (cause 10): a divergence small enough to be float rounding, or
two sides computing in different float precisions. Pure numpy."""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt

# float32 has 24 significand bits: reordering a sum of n terms changes it by up to
# ~n * 6e-8 of its scale; across frameworks (XLA vs Eigen) xentdbg measured up to 7e-5
# of a tensor's scale after 10 steps of case 1 (xentdbg/compare/metrics.py).
ROUNDOFF_RTOL = 1e-2


def float_precision(ctx: Context) -> list[Finding]:
    """A tensor pair whose dtypes differ (float64 on one side, float32 on the other)."""
    mismatched = [(pa.name, pa.dtype, pb.dtype) for (i, j) in ctx.pairing.params
                  for pa, pb in [(ctx.a.info.params[i], ctx.b.info.params[j])] if pa.dtype != pb.dtype]
    # Only tensors the computation produced in its own dtype: layer outputs and gradients.
    # Inputs are compared as float64 per-sample sums, and a loss a step returns as a Python
    # float reads as float64: neither says what precision the model computed in.
    acts = [(t.name_a, t.summary_a.dtype, t.summary_b.dtype) for t in ctx.step.tensors
            if t.phase in ("activations", "gradients") and t.summary_a is not None and t.summary_b is not None
            and t.summary_a.dtype != t.summary_b.dtype]
    found = mismatched or acts
    if not found:
        return []
    ev = tuple(f"{name}: A {da}, B {db}" for name, da, db in found[:6])
    return [Finding("float-precision", "The two sides compute in different float precisions", ev,
                    "Use one dtype on both sides (jax_enable_x64 / keras.config.set_floatx).", fit=0.8,
                    numbers={"tensors": [list(x) for x in found]})]


ELEMENT_RTOL = 1e-2
"""Largest ``|A/B - 1|`` float32 rounding leaves on a gradient element of at least
:data:`ELEMENT_FLOOR` of the tensor's scale (rounding moves such elements by ~1e-6
relative; label smoothing 0.1 moves them by ~10%)."""
ELEMENT_FLOOR = 1e-2


def _element_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """``max |A/B - 1|`` over elements of at least :data:`ELEMENT_FLOOR` of the scale."""
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    mag = np.maximum(np.abs(a64), np.abs(b64))
    scale = float(mag.max()) if mag.size else 0.0
    big = mag >= ELEMENT_FLOOR * scale
    if scale == 0 or not big.any():
        return 0.0
    return float(np.max(np.abs(a64[big] - b64[big]) / mag[big]))


def numeric_noise(ctx: Context) -> list[Finding]:
    """Every divergent tensor of the step is within float32 rounding of its scale (or within
    the measured noise floor with ``--calibrate``) and points the same way (cosine ~ 1), and
    no gradient's large elements differ by more than :data:`ELEMENT_RTOL` of themselves.

    The whole step decides, not its first tensor: a loss 0.14% apart (a scalar, cosine 1
    by construction) is noise only if the gradients of the same step agree elementwise."""
    decisive = [t for t in ctx.step.divergences if t.phase != "activations"]
    if not decisive:
        return []
    if ctx.float64 is not None and ctx.float64.ran:
        return []  # the float64 oracle decided: it showed a real difference (rounding is no divergence)
    needed: list[float] = []
    for t in decisive:
        m = t.metrics
        if m is None or not m.same_shape or m.nonfinite_mismatch or m.cosine is None or m.max_rel is None:
            return []  # flags, inputs, non-finite values or a screened-only tensor: not rounding
        needed.append(m.needed_rtol(ctx.tolerance))
    if ctx.agrees("gradients") and any(u.phase == "updates" for u in decisive):
        return []  # same gradients, different steps: the optimizer differs (updates allow 2 ulps of w)
    worst = max(needed)
    t = decisive[needed.index(worst)]
    ratios = [(name, _element_ratio(a, b)) for name, a, b in ctx.param_triples("gradients")]
    off = [(name, r) for name, r in ratios if r > ELEMENT_RTOL]
    if off:
        return []
    floors = ctx.noise or {}
    if floors and all(floors.get(u.phase, 0) > 0 and n <= 10 * floors[u.phase] for u, n in zip(decisive, needed)):
        calibrated = (f"{len(decisive)} divergent tensor(s), worst {t.label}: needs rtol {fmt(worst, 3)}; "
                      f"run-to-run noise of this phase measured by --calibrate: {fmt(floors[t.phase], 3)}",)
        return [Finding("numeric-noise", "Within the measured run-to-run noise", calibrated,
                        "Nothing to fix: raise --rtol to the calibrated value, or make the runs deterministic.",
                        fit=0.9)]
    cosines = [u.metrics.cosine for u in decisive if u.metrics is not None and u.metrics.cosine is not None]
    if worst <= ROUNDOFF_RTOL and min(cosines) >= 0.9999:
        largest = max((r for _, r in ratios), default=0.0)
        ev: tuple[str, ...] = (f"all {len(decisive)} divergent tensor(s) of the step: worst {t.label}, "
                               f"needs rtol {fmt(worst, 3)}; lowest cosine {min(cosines):.6f}",
                               f"gradient elements of at least {ELEMENT_FLOOR:g} of their tensor's scale differ "
                               f"by at most {fmt(largest, 3)} of themselves" if ratios else
                               "no gradients recorded to check elementwise",
                               "that is the size of float32 summation-order differences "
                               "(oneDNN, XLA fusion, another framework)")
        return [Finding("numeric-noise", "Probably float32 rounding noise, not a bug", ev,
                        f"If the trainings then agree in loss, accept it: --rtol {fmt(2 * worst, 2)}; "
                        "run with --calibrate to measure the noise floor.", fit=0.3)]
    return []
