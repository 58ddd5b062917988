"""Why two trainings diverge: probes that read the captured step of the first
divergence and return :class:`Finding` s with their evidence and fix. Pure functions.

    from xentdbg.diagnose import diagnose
    diagnosis = diagnose(context)      # built by the replay engine
    diagnosis.top, diagnosis.others, diagnosis.unexplained

Each probe tests one cause against the numbers (a residual, a ratio, a count) and
returns nothing when they do not fit; no probe guesses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xentdbg.diagnose.context import Context, Side, fmt, ratio
from xentdbg.diagnose.data import different_data, normalized_input, rescaled_input
from xentdbg.diagnose.distributed import (
    learning_rate_replica_scaling,
    per_replica_batchnorm,
    uneven_replica_batches,
    unscaled_replica_loss,
)
from xentdbg.diagnose.dropout import dropout_masks
from xentdbg.diagnose.epochs import repeated_epoch_order
from xentdbg.diagnose.frozen import frozen_parameter
from xentdbg.diagnose.gradients import loss_scale, missing_regularization
from xentdbg.diagnose.initial import initial_weights
from xentdbg.diagnose.labels import label_smoothing
from xentdbg.diagnose.noise import float_precision, numeric_noise
from xentdbg.diagnose.nonfinite import nonfinite_origin
from xentdbg.diagnose.optimizer import optimizer_update
from xentdbg.diagnose.training import batchnorm_state, batchnorm_variance_correction, training_flag
from xentdbg.diagnose.weights import sample_weights
from xentdbg.diagnose.xent import (
    fused_softmax_xent,
    log_plus_epsilon,
    logits_vs_probabilities,
    probabilities_as_logits,
)
from xentdbg.findings import Diagnosis, Finding

__all__ = ["Context", "Diagnosis", "Finding", "Side", "diagnose", "PROBES"]

Probe = Callable[[Context], list[Finding]]

# In the order of the causes; ties in fit keep this order.
PROBES: tuple[Probe, ...] = (
    initial_weights, frozen_parameter, logits_vs_probabilities, probabilities_as_logits, log_plus_epsilon,
    nonfinite_origin, fused_softmax_xent, label_smoothing, uneven_replica_batches, sample_weights, training_flag,
    per_replica_batchnorm, batchnorm_state, batchnorm_variance_correction, dropout_masks, rescaled_input,
    normalized_input, unscaled_replica_loss, loss_scale, missing_regularization, learning_rate_replica_scaling,
    optimizer_update, float_precision, numeric_noise,
)


def diagnose(ctx: Context, dataset_sums: np.ndarray | None = None, batch_start: int | None = None) -> Diagnosis:
    """Run every probe on ``ctx``; findings sorted by how completely they explain the step."""
    findings: list[tuple[float, int, Finding]] = []
    errors = []
    # a repeated epoch order is the more specific account of different data: ties keep it first
    probes: list[Probe] = [repeated_epoch_order, lambda c: different_data(c, dataset_sums, batch_start), *PROBES]
    for order, probe in enumerate(probes):
        try:
            for f in probe(ctx):
                findings.append((-f.fit, order, f))
        except Exception as e:  # a probe must never hide the comparison's result
            errors.append(f"{getattr(probe, '__name__', 'probe')}: {type(e).__name__}: {e}")
    findings.sort(key=lambda t: (t[0], t[1]))
    out = [f for _, _, f in findings]
    unexplained = [] if out else _raw(ctx)
    return Diagnosis(out, unexplained, errors)


def _raw(ctx: Context) -> list[str]:
    """What the step shows, for a reader, when no probe fits: per divergent tensor its
    size, cosine and best constant ratio B/A (``c`` minimising ``|B - c A|``, with the
    residual left), then the tensors that agree."""
    lines = ["no probe's pattern fits the captured numbers; the raw evidence:"]
    by_phase: dict[str, int] = {}
    for t in ctx.step.divergences:
        by_phase[t.phase] = by_phase.get(t.phase, 0) + 1
    lines.append("divergent tensors in step " + str(ctx.step.step) + ": "
                 + ", ".join(f"{p} {n}" for p, n in by_phase.items()))
    lines.append(f"loss A {fmt(ctx.a.loss)}, B {fmt(ctx.b.loss)}")
    m = ctx.first.metrics
    if m is not None:
        cosine = "n/a" if m.cosine is None else f"{m.cosine:.6f}"
        over = f" (over the {m.finite_pairs} of {m.size} elements finite on both sides)" if m.partial else ""
        lines.append(f"first divergence {ctx.first.label}: max abs diff {fmt(m.max_abs, 4)}{over}, "
                     f"cosine {cosine}, non-finite A/B {m.nonfinite_a}/{m.nonfinite_b}")
    decisive = [t for t in ctx.step.divergences if t.phase not in ("activations", "flags", "inputs")]
    for t in decisive[:8]:
        tm = t.metrics
        if tm is None or not tm.same_shape:
            continue
        a, b = dict(ctx.a.tensors(t.phase)).get(t.name_a), dict(ctx.b.tensors(t.phase)).get(t.name_b)
        c, residual = ratio(b, a) if a is not None and b is not None and np.size(a) > 1 else (float("nan"), 0.0)
        size = tm.max_abs / tm.scale if tm.scale else float("nan")
        cosine = "n/a" if tm.cosine is None else f"{tm.cosine:.6f}"
        fitted = f", B ≈ {fmt(c, 4)}·A (residual {residual:.2g})" if np.isfinite(c) else ""
        lines.append(f"  {t.label}: max|A−B| {fmt(tm.max_abs, 3)} = {fmt(size, 3)} of the scale, cosine {cosine}"
                     + fitted)
    if len(decisive) > 8:
        lines.append(f"  ... and {len(decisive) - 8} more")
    agree: dict[str, list[str]] = {}
    for t in ctx.step.tensors:
        if t.ok and t.phase not in ("activations", "inputs", "flags"):
            agree.setdefault(t.phase, []).append(t.name_a)
    if agree:
        lines.append("within tolerance: " + "; ".join(
            f"{p} {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}" for p, names in agree.items()))
    return lines
