"""Training-mode probes: a layer that ran in inference mode on one side (cause 4), and
BatchNorm moving statistics that one side never updates or updates with another
momentum convention (cause 5). Pure numpy."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.params import layer_and_role
from xentdbg.diagnose.context import Context, Finding, Side, fmt, ratio


def _flag(v) -> bool | str:
    return bool(v) if v is None or isinstance(v, bool) else v


def training_flag(ctx: Context) -> list[Finding]:
    """Cause 4: a layer that reads ``training`` received True on one side, not on the other."""
    flags = ctx.divergent("flags")
    if not flags:
        return []
    first = flags[0]
    off = "A" if not _flag(first.value_a) else "B"
    side = ctx.a if off == "A" else ctx.b
    on = "B" if off == "A" else "A"
    layers = [(t.name_a if off == "A" else t.name_b, t.value_a if off == "A" else t.value_b) for t in flags]
    ev = [f"side {off}: " + ", ".join(f"{name} received training={value!r}" for name, value in layers)
          + f"; side {on}: True"]
    kind = side.info.kind
    if kind == "KerasLoop":
        how = ("the train step calls the model without training=True: Keras resolves training=None to inference "
               "for these layers (keras/src/layers/layer.py ~L1065, Keras 3.15)")
        fix = f"In side {off}'s train step, call the model as model(x, training=True)."
    elif kind == "LegacyKerasFunction":
        how = ("the K.function is not fed the learning phase, so tf_keras runs the graph with learning phase 0 "
               "(tf_keras/src/backend.py learning_phase() ~L325)")
        fix = (f"Add xentdbg.legacy_learning_phase() to side {off}'s K.function inputs and feed True, "
               "and pass model.updates to its updates.")
    else:
        how = f"side {off} ({kind}) runs these layers in inference mode"
        fix = f"Run side {off}'s layers in training mode (training=True)."
    ev.append(how)
    if not ctx.agrees("loss"):
        ev.append(f"in this step the loss differs: A {fmt(ctx.a.loss)}, B {fmt(ctx.b.loss)}")
    frozen = [name for name, a0, a1, b0, b1 in ctx.state_triples()
              if (a1 if off == "A" else b1).tobytes() == (a0 if off == "A" else b0).tobytes()]
    if frozen:
        ev.append(f"side {off}'s {', '.join(frozen)} did not move in this step "
                  "(inference-mode BatchNorm never updates)")
    return [Finding("training-flag", f"{layers[0][0]} runs in inference mode on side {off}", tuple(ev), fix,
                    numbers={"side": off, "layers": [n for n, _ in layers], "values": [v for _, v in layers]})]


def bn_input(side: Side, state_name: str) -> np.ndarray | None:
    """The activation that feeds the layer owning ``state_name``, as ``(n, C)`` float64 rows
    (the activation row before that layer's: Keras names rows by layer, ``bn`` for
    ``sequential/bn/moving_mean``; NNX by module path, ``bn`` for ``['bn']['mean']``)."""
    path, _ = layer_and_role(state_name)
    if not path:
        return None
    acts = side.activations
    names = [n for n, _ in acts]
    k = next((i for i, n in enumerate(names) if n in ("/".join(path), path[-1])), None)
    if k is None or k == 0:
        return None
    h = np.asarray(acts[k - 1][1], np.float64)
    return h.reshape(-1, h.shape[-1])


def _batch_mean(side: Side, state_name: str) -> np.ndarray | None:
    """Mean over the batch (and spatial axes) of the activation that feeds the layer owning
    ``state_name``."""
    h = bn_input(side, state_name)
    return None if h is None else h.mean(axis=0)


def batchnorm_state(ctx: Context) -> list[Finding]:
    """Cause 5: moving statistics never updated on one side, or another momentum.

    Keras: ``moving = m * moving + (1 - m) * batch_stat`` (keras/src/layers/normalization/
    batch_normalization.py ~L64); Flax NNX the same (flax/nnx/nn/normalization.py:405-408,
    flax 0.12.8). From the pre-step value ``s0``, post-step ``s1`` and
    the batch mean ``mu``: ``1 - m = <s1 - s0, mu - s0> / |mu - s0|^2``."""
    divergent = {t.name_a for t in ctx.divergent("state")} | {t.name_b for t in ctx.divergent("state")}
    triples = [t for t in ctx.state_triples() if t[0] in divergent]
    if not triples:
        return []
    frozen: dict[str, list[str]] = {"A": [], "B": []}
    momenta = {}
    for name, a0, a1, b0, b1 in triples:
        for label, s0, s1 in (("A", a0, a1), ("B", b0, b1)):
            if s1.tobytes() == s0.tobytes():
                frozen[label].append(name)
        if "mean" in layer_and_role(name)[1]:
            for label, side, s0, s1 in (("A", ctx.a, a0, a1), ("B", ctx.b, b0, b1)):
                mu = _batch_mean(side, name)
                if mu is not None and mu.shape == s0.shape and s1.tobytes() != s0.tobytes():
                    step, residual = ratio(s1.astype(np.float64) - s0, mu - s0)
                    if residual < 1e-3:
                        momenta[(name, label)] = 1.0 - step
    findings = []
    for label in ("A", "B"):
        other = "B" if label == "A" else "A"
        if frozen[label] and not frozen[other]:
            side = ctx.a if label == "A" else ctx.b
            moved = max(float(np.max(np.abs(t[2] - t[1] if other == "A" else t[4] - t[3]))) for t in triples)
            ev = [f"side {label}'s {', '.join(frozen[label])} are bitwise unchanged after step {ctx.step.step}; "
                  f"side {other}'s moved by up to {fmt(moved)}"]
            m = [v for (n, s), v in momenta.items() if s == other]
            if m:
                ev.append(f"side {other}'s update matches momentum {m[0]:.4g} against the batch mean")
            if ctx.agrees("loss") and ctx.agrees("gradients"):
                ev.append("the loss and gradients of this step agree: only the statistics differ")
            if side.info.kind == "LegacyKerasFunction":
                fix = (f"Pass model.updates to side {label}'s K.function(..., "
                       "updates=optimizer updates + model.updates).")
            else:
                fix = f"Run side {label}'s BatchNorm layers in training mode so that their moving statistics update."
            findings.append(Finding("batchnorm-not-updated",
                                    f"Side {label} never updates the BatchNorm moving statistics",
                                    tuple(ev), fix, numbers={"side": label, "frozen": frozen[label]}))
    both = {n for (n, _) in momenta}
    for name in sorted(both):
        if (name, "A") in momenta and (name, "B") in momenta:
            ma, mb = momenta[(name, "A")], momenta[(name, "B")]
            if abs(ma - mb) > 1e-3:
                flipped = abs(ma - (1 - mb)) < 1e-3
                momentum_ev = (f"{name}: side A's update matches momentum {ma:.4g}, side B's {mb:.4g} "
                               "(moving = m * moving + (1 - m) * batch mean)",)
                findings.append(Finding(
                    "batchnorm-momentum",
                    "BatchNorm momentum convention differs (m vs 1 - m)" if flipped else "BatchNorm momentum differs",
                    momentum_ev,
                    "Keras' momentum is the weight of the old value (0.99); PyTorch's momentum=0.01 is Keras' 0.99.",
                    numbers={"momentum_a": ma, "momentum_b": mb}))
    return findings


def batchnorm_variance_correction(ctx: Context) -> list[Finding]:
    """One side puts the unbiased batch variance ``n/(n-1) * var`` into ``moving_variance``,
    the other the biased ``var``.

    tf_keras (Keras 2) runs BatchNormalization on 4-D and 5-D inputs with TensorFlow's
    fused kernel (``fused=None`` means rank 4 or 5: tf_keras/src/layers/normalization/
    batch_normalization.py:352-357), whose running variance carries Bessel's correction
    (:945-946 says so; :1007-1045 assign the kernel's running statistics). Keras 3 averages
    the biased ``tf.nn.moments`` variance (keras/src/layers/normalization/
    batch_normalization.py:363-391; keras/src/backend/tensorflow/nn.py:1492-1512). Both
    normalize the batch with the biased variance, so training steps agree; the moving
    variance, which inference uses, does not. Per side ``X``, from the pre-step ``s0``,
    post-step ``s1``, the momentum ``m`` read off the moving mean (see
    :func:`batchnorm_state`) and the layer input's biased variance ``var`` over its ``n``
    values per channel::

        s1 = m * s0 + (1 - m) * k_X * var,    k_X = 1 (biased) or n / (n - 1) (unbiased)
    """
    pairs: dict[tuple[str, ...], dict[str, tuple]] = {}
    for name, a0, a1, b0, b1 in ctx.state_triples():
        path, role = layer_and_role(name)
        if role in ("moving_mean", "moving_variance"):
            pairs.setdefault(path, {})[role] = (name, *(np.asarray(t, np.float64) for t in (a0, a1, b0, b1)))
    divergent = {t.name_a for t in ctx.divergent("state")}
    findings = []
    for roles in pairs.values():
        if "moving_mean" not in roles or "moving_variance" not in roles or roles["moving_variance"][0] not in divergent:
            continue
        name, a0, a1, b0, b1 = roles["moving_variance"]
        _, mean0, mean1, _, _ = roles["moving_mean"]
        h = bn_input(ctx.a, name)
        if h is None or h.shape[1] != a0.size or h.shape[0] < 2:
            continue
        n = h.shape[0]
        mu, var = h.mean(axis=0), h.var(axis=0)
        step, residual = ratio(mean1 - mean0, mu - mean0)  # mean1 - mean0 = (1 - m) (mu - mean0)
        if residual > 1e-3 or not 0.0 < step <= 1.0 or np.min(var) <= 0:
            continue
        ks, fits = [], []
        for s0, s1 in ((a0, a1), (b0, b1)):
            k = ((s1 - s0) / step + s0) / var  # s1 = s0 + (1 - m) (k var - s0)
            kx = float(np.median(k))
            ks.append(kx)
            fits.append(float(np.max(np.abs(s0 + step * (kx * var - s0) - s1)) / max(float(np.max(np.abs(s1))), 1e-30)))
        unbiased = n / (n - 1)
        near = 0.05 * (unbiased - 1.0)  # within 5% of the correction's size
        which = {label: ("unbiased" if abs(k - unbiased) <= near else "biased" if abs(k - 1.0) <= near else None)
                 for label, k in zip("AB", ks)}
        if sorted(v or "" for v in which.values()) != ["biased", "unbiased"] or max(fits) > 1e-5:
            continue
        corrected = "A" if which["A"] == "unbiased" else "B"
        other = "B" if corrected == "A" else "A"
        k_fix, k_other = (ks[0], ks[1]) if corrected == "A" else (ks[1], ks[0])
        ev = [f"{name}: side {corrected}'s update matches moving = m * moving + (1 - m) * n/(n-1) * var with "
              f"n/(n-1) = {fmt(unbiased, 7)} (n = {n} values per channel; fitted {fmt(k_fix, 7)}), side {other}'s "
              f"the biased var (fitted {fmt(k_other, 7)}); m = {fmt(1 - step, 5)} from the moving mean; "
              f"residuals {max(fits):.1g}",
              "the moving mean agrees: only the variance's normalization differs"]
        if ctx.runs(corrected, "tf_keras") and ctx.runs(other, "keras"):
            ev.append(f"side {corrected} runs Keras 2 (tf_keras): BatchNormalization on a 4-D input uses "
                      "TensorFlow's fused kernel, whose running variance is unbiased (tf_keras/src/layers/"
                      "normalization/batch_normalization.py:352-357, :945-946); side "
                      f"{other} runs Keras 3, which averages the biased variance (keras/src/layers/normalization/"
                      "batch_normalization.py:363-391)")
        if ctx.agrees("loss") and ctx.agrees("gradients"):
            ev.append("the loss and gradients of this step agree: training is the same, inference is not")
        fix = (f"Both are BatchNorm; they differ in the running variance only. To match Keras 3, build side "
               f"{corrected}'s BatchNormalization with fused=False (tf_keras's non-fused path averages the biased "
               "variance); or accept a moving variance larger by n/(n-1) on that side.")
        findings.append(Finding("batchnorm-variance-correction",
                                f"Side {corrected} puts the unbiased batch variance into {name}", tuple(ev), fix,
                                numbers={"side": corrected, "n": n, "k_a": ks[0], "k_b": ks[1],
                                         "momentum": 1 - step}))
    return findings
