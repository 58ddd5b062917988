"""Numeric-noise probe (cause 10): a divergence small enough to be float rounding, or
two sides computing in different float precisions. Pure numpy."""

from __future__ import annotations

from xentdbg.diagnose.context import Context, Finding, fmt

# float32 has 24 significand bits: reordering a sum of n terms changes it by up to
# ~n * 6e-8 of its scale; across frameworks (XLA vs Eigen) xentdbg measured up to 7e-5
# of a tensor's scale after 10 steps of case 1 (xentdbg/compare/metrics.py).
ROUNDOFF_RTOL = 1e-2


def float_precision(ctx: Context) -> list[Finding]:
    """A tensor pair whose dtypes differ (float64 on one side, float32 on the other)."""
    mismatched = [(pa.name, pa.dtype, pb.dtype) for (i, j) in ctx.pairing.params
                  for pa, pb in [(ctx.a.info.params[i], ctx.b.info.params[j])] if pa.dtype != pb.dtype]
    acts = [(t.name_a, t.summary_a.dtype, t.summary_b.dtype) for t in ctx.step.tensors
            if t.summary_a is not None and t.summary_b is not None and t.summary_a.dtype != t.summary_b.dtype]
    found = mismatched or acts
    if not found:
        return []
    ev = tuple(f"{name}: A {da}, B {db}" for name, da, db in found[:6])
    return [Finding("float-precision", "The two sides compute in different float precisions", ev,
                    "Use one dtype on both sides (jax_enable_x64 / keras.config.set_floatx).", fit=0.8,
                    numbers={"tensors": [list(x) for x in found]})]


def numeric_noise(ctx: Context) -> list[Finding]:
    """The first divergence is within float32 rounding of the tensor's scale (or within the
    measured noise floor with ``--calibrate``) and points the same way (cosine ~ 1)."""
    t = ctx.first
    m = t.metrics
    if m is None or not m.same_shape or m.nonfinite_mismatch or m.cosine is None or m.max_rel is None:
        return []  # (the first divergence always has its full metrics)
    needed = m.needed_rtol(ctx.tolerance)
    floor = (ctx.noise or {}).get(t.phase)
    if floor is not None and floor > 0 and needed <= 10 * floor:
        calibrated = (f"{t.label}: needs rtol {fmt(needed, 3)}; "
                      f"run-to-run noise of this phase measured by --calibrate: {fmt(floor, 3)}",)
        return [Finding("numeric-noise", "Within the measured run-to-run noise", calibrated,
                        "Nothing to fix: raise --rtol to the calibrated value, or make the runs deterministic.",
                        fit=0.9)]
    if needed <= ROUNDOFF_RTOL and m.cosine >= 0.9999:
        ev: tuple[str, ...] = (f"{t.label}: max relative difference {fmt(m.max_rel, 3)} of the tensor's scale, "
                               f"cosine {m.cosine:.6f}",
                               "that is the size of float32 summation-order differences "
                               "(oneDNN, XLA fusion, another framework)")
        return [Finding("numeric-noise", "Probably float32 rounding noise, not a bug", ev,
                        f"If the trainings then agree in loss, accept it: --rtol {fmt(2 * needed, 2)}; "
                        "run with --calibrate to measure the noise floor.", fit=0.3)]
    return []
