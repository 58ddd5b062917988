"""Data probes (cause 6): the two sides trained on different batches (order, subset), or
one side preprocesses its inputs differently. Pure numpy.

Evidence comes from the per-sample sums of each batch that capture records (the exact
digests only say *that* they differ) and from the dataset's own per-sample sums."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import TensorComparison
from xentdbg.diagnose.context import Context, Finding, fmt, ratio

_SCALES = {255.0: "x 255", 1 / 255.0: "/ 255"}


def dataset_positions(sums: np.ndarray, dataset: np.ndarray | None) -> np.ndarray | None:
    """Index in the dataset of each sample of a batch (matched by per-sample sum), -1 if absent."""
    if dataset is None:
        return None
    order = np.argsort(dataset, kind="stable")
    keys = dataset[order]
    at = np.clip(np.searchsorted(keys, sums), 0, len(keys) - 1)
    hit = np.isclose(keys[at], sums, rtol=1e-9, atol=1e-9)
    return np.where(hit, order[at], -1)


def different_data(ctx: Context, dataset_sums: np.ndarray | None = None,
                   batch_start: int | None = None) -> list[Finding]:
    """The inputs phase differs: same samples reordered, other samples, or rescaled; or
    the batches were aligned as the same samples in another order, yet pair the images
    with other labels (:func:`mixed_labels`)."""
    diverged = ctx.divergent("inputs")
    if not diverged:
        return mixed_labels(ctx)
    ia, ib = dict(ctx.a.tensors("inputs")), dict(ctx.b.tensors("inputs"))
    xa, xb = np.asarray(ia["x"], np.float64), np.asarray(ib["x"], np.float64)
    k = ctx.step.step
    earlier = "" if k == 0 else f"; batches agree in steps 0..{k - 1}"
    ev = [f"step {k}: the batch digests differ{earlier}"]
    al = ctx.step.alignment
    if xa.shape == xb.shape and np.allclose(np.sort(xa), np.sort(xb), rtol=1e-9, atol=1e-9):
        # the same images; with the same labels they would have been aligned (compare_step)
        if al is None or al.perm is not None:
            ev.append("the two batches hold the same samples in a different order")
        else:
            ev.append("the two batches hold the same images in a different order, but not with the same labels "
                      f"(per-sample sums of x and y: {al.common} of {al.size_b} samples in both)")
        kind = "order"
    else:
        c, residual = ratio(xa, xb) if xa.shape == xb.shape else (float("nan"), float("inf"))
        scale = next((name for s, name in _SCALES.items() if abs(c / s - 1) < 1e-4), None) if residual < 1e-6 else None
        if scale:
            ev.append(f"side A's per-sample pixel sums are side B's times {fmt(c)} (residual {residual:.1e}): "
                      f"one side's pixels are scaled {scale}")
            kind = "scale"
        else:
            common = np.intersect1d(np.round(xa, 6), np.round(xb, 6)).size
            ev.append(f"{common} of {xa.size} samples are in both batches")
            kind = "samples"
    pa, pb = dataset_positions(xa, dataset_sums), dataset_positions(xb, dataset_sums)
    natural = None
    if pa is not None and pb is not None and batch_start is not None:
        natural = np.arange(batch_start, batch_start + xa.size)
        for label, pos in (("A", pa), ("B", pb)):
            if np.array_equal(pos, natural):
                ev.append(f"side {label}'s batch is samples {batch_start}..{batch_start + xa.size - 1} in order")
            elif np.all(pos >= 0):
                ev.append(f"side {label}'s batch is dataset samples {', '.join(map(str, pos[:5]))}, … "
                          f"(from {pos.min()} to {pos.max()})")
    ev += _after_alignment(ctx)
    if kind == "scale":
        fix = "Preprocess the inputs the same way on both sides (e.g. divide by 255 exactly once)."
        title = "The two sides feed differently scaled inputs"
    else:
        shuffled = [s for s, pos in (("A", pa), ("B", pb))
                    if pos is not None and natural is not None and not np.array_equal(pos, natural)]
        fits = [s.label for s in ctx.sides if s.info.kind == "KerasFit" and s.label in (shuffled or "AB")]
        if fits:
            fix = (f"Pass shuffle=False to side {fits[0]}'s model.fit (fit shuffles by default), "
                   "or shuffle both sides alike.")
        else:
            fix = "Feed both sides the same batches in the same order (same subset, shuffling and preprocessing)."
        title = "The two sides train on different batches" + (" (same samples, other order)" if kind == "order" else "")
    return [Finding("different-data", title, tuple(ev), fix, numbers={"kind": kind, "step": k})]


def mixed_labels(ctx: Context) -> list[Finding]:
    """A step aligned as the same samples in another order (``step.reordered``: the
    per-sample sums of ``x`` and ``y`` match), where a side's images are the dataset's but
    its labels are not theirs (:attr:`Side.x` found, :attr:`Side.y` not: the batch's ``y``
    digest is not that of the dataset's labels of those images). One-hot rows all sum to
    1, so the sums alone cannot tell labels apart. Nothing when no side's images are found."""
    if not ctx.step.reordered:
        return []
    off = [s.label for s in ctx.sides if s.x is not None and s.y is None]
    ok = [s.label for s in ctx.sides if s.x is not None and s.y is not None]
    if not off:
        return []
    k = ctx.step.step
    who = " and ".join(off)
    ev = [f"step {k}: the two batches hold the same images in another order (per-sample pixel sums), and their "
          "per-sample label sums agree, but one-hot rows all sum to 1: the sums cannot tell labels apart",
          f"side {who}'s images are exact dataset samples (batch digest of x), but its labels are not those "
          "samples' labels (digest of y)"]
    if ok:
        ev.append(f"side {' and '.join(ok)} feeds the dataset's labels of the same images")
    ev.append(f"losses A {fmt(ctx.a.loss)}, B {fmt(ctx.b.loss)}")
    return [Finding("different-data", f"Side {who} pairs the images with other labels", tuple(ev),
                    "Shuffle the images and their labels with one permutation (x[p], y[p]), on both sides alike.",
                    numbers={"kind": "labels", "step": k, "sides": off})]


def _after_alignment(ctx: Context) -> list[str]:
    """What the re-run of each side on the other side's batch showed (``step.realigned``)."""
    realigned = ctx.step.realigned
    if realigned is None:
        return []
    if not realigned.ran:
        return [f"not re-run on the other side's batch ({realigned.unavailable}): what else differs is not known"]
    k = ctx.step.step
    first = realigned.first
    if first is not None:
        return [f"re-run on the same batch from the same pre-step weights, the two sides still differ: first at "
                f"{first.label}, the divergence that remains after alignment (diagnosed below)"]
    if realigned.uncovered:
        return ["re-run on the other side's batch from the same pre-step weights, the two sides agree, but "
                f"{', '.join(realigned.uncovered)} could not be re-run"]
    return [f"re-run on the other side's batch from the same pre-step weights, each side agrees with the other's "
            f"record in every decisive tensor (loss, gradients, state, updates, weights): the data order is the "
            f"whole story at step {k}"]


def _extra_layers(ctx: Context) -> list[str]:
    """The layer outputs left out of the activation alignment, ``"A rescaling (100, 784)"``."""
    return ctx.pairing.activations.unpaired if ctx.pairing.activations else []


def _extra_layers_side(ctx: Context) -> str | None:
    """The side all unpaired layer outputs belong to (a layer only it has), or None."""
    owners = {u.split(" ", 1)[0] for u in _extra_layers(ctx)}
    return owners.pop() if len(owners) == 1 else None


def _first_layer_outputs(ctx: Context) -> tuple[TensorComparison, np.ndarray, np.ndarray] | None:
    """Where the inputs agree and the sides part first at the first pair of aligned layer
    outputs (a layer without weights one side adds, a Rescaling say, is left out of the
    alignment: xentdbg.compare.matching): that comparison and both outputs in float64."""
    inside = ctx.step.first_activation  # where inside the step the sides part
    if not ctx.agrees("inputs") or inside is None:
        return None
    first_pair = next((t for t in ctx.step.tensors if t.phase == "activations"), None)
    if first_pair is not inside:
        return None
    ha, hb = dict(ctx.a.activations).get(inside.name_a), dict(ctx.b.activations).get(inside.name_b)
    if ha is None or hb is None:
        return None
    return inside, np.asarray(ha, np.float64), np.asarray(hb, np.float64)


def rescaled_input(ctx: Context) -> list[Finding]:
    """Inputs agree but the first layer's outputs differ by a constant factor such as 1/255:
    one side rescales inside its own step."""
    first = _first_layer_outputs(ctx)
    if first is None:
        return []
    inside, ha, hb = first
    c, residual = ratio(hb, ha)
    if residual > 1e-3:
        return []
    # Which side scales: the one with a layer the other lacks (a Rescaling), when only one has.
    who = _extra_layers_side(ctx)
    factor = c if who != "A" else 1 / c  # what the scaling side multiplies its inputs by
    scale = next((name for s, name in _SCALES.items() if abs(factor / s - 1) < 1e-3), None)
    ev = [f"inputs agree (same batch digests), but side B's {inside.name_b} output is side A's times {fmt(c)} "
          f"(relative residual {residual:.1e})"]
    if who is not None:
        ev.append(f"side {who} has layers the other lacks ({', '.join(_extra_layers(ctx))}): side "
                  f"{who} multiplies its inputs by {fmt(factor)}" + (f" ({scale}) inside its step" if scale else ""))
    elif scale:
        ev.append(f"one side's inputs reach its first layer {scale} relative to the other's")
    ev.append(f"losses A {fmt(ctx.a.loss)}, B {fmt(ctx.b.loss)}")
    title = (f"Side {who} rescales its inputs inside the training step" if who else
             "One side rescales its inputs inside the training step")
    return [Finding("different-data", title, tuple(ev),
                    "Preprocess the inputs once, the same way on both sides (remove the extra scaling).",
                    fit=1.0 if scale else 0.7, numbers={"factor": c, "residual": residual, "side": who})]


def normalized_input(ctx: Context) -> list[Finding]:
    """Inputs agree but one side feeds its first Dense layer ``(x - m) / s``: an affine
    normalization inside its own step, with ``m`` and ``s`` recovered.

    From the same weights ``W, b`` (the cross-feed's view), ``z_B = z_A / s - (m / s) 1ᵀW +
    b (1 - 1/s)`` for the first layer's pre-activations: per output unit ``j`` the two are
    affine, with one shared slope ``α = 1/s`` and an intercept ``c_j = b_j (1 - α) - α m
    Σ_i W_ij``. The captured outputs are after the activation (ReLU), so only elements
    positive on both sides are used. ``α`` is the pooled within-unit slope, ``m`` the
    least-squares solution of the intercepts; both fits must leave a residual at float32
    rounding."""
    first = _first_layer_outputs(ctx)
    if first is None or first[1].shape != first[2].shape or first[1].ndim != 2:
        return []
    inside, ha, hb = first
    width = ha.shape[1]
    before = ctx.before_triples()
    kernel = next((np.asarray(a, np.float64) for _, a, _ in before if np.ndim(a) == 2 and np.shape(a)[1] == width),
                  None)
    bias = next((np.asarray(a, np.float64) for _, a, _ in before if np.shape(a) == (width,)), None)
    if kernel is None or bias is None:
        return []
    both = (ha > 0) & (hb > 0)
    counts = both.sum(axis=0)
    cols = counts >= 3
    if cols.sum() < 3:
        return []
    num = den = 0.0
    means_a, means_b = np.zeros(width), np.zeros(width)
    for j in np.flatnonzero(cols):
        za, zb = ha[both[:, j], j], hb[both[:, j], j]
        means_a[j], means_b[j] = za.mean(), zb.mean()
        num += float(((za - za.mean()) * (zb - zb.mean())).sum())
        den += float(((za - za.mean()) ** 2).sum())
    if den <= 0:
        return []
    alpha = num / den
    used = both & cols[None, :]  # the units fitted: a unit positive on both sides < 3 times has no mean
    fitted = np.where(used, alpha * ha + (means_b - alpha * means_a), hb)
    residual = float(np.linalg.norm((fitted - hb)[used])) / max(float(np.linalg.norm(hb[used])), 1e-30)
    intercept = (means_b - alpha * means_a)[cols]
    sums = kernel.sum(axis=0)[cols]
    target = intercept - bias[cols] * (1 - alpha)
    if not np.any(sums) or alpha <= 0:
        return []
    mean = float(-(target @ sums) / (alpha * (sums @ sums)))
    fit_residual = float(np.linalg.norm(target + alpha * mean * sums)) / max(float(np.linalg.norm(target)), 1e-30)
    shift = abs(mean) * float(np.max(np.abs(sums))) > 1e-6 * float(np.max(np.abs(hb)))
    if residual > 1e-4 or fit_residual > 1e-3 or not shift or abs(alpha - 1) < 1e-3:
        return []  # no shift (a pure scale: rescaled_input), or not affine
    std = 1 / alpha
    # Relative to A, B sees (x - m) / s; the same numbers say A sees (x - m_A) / s_A relative
    # to B, with m_A = -m / s and s_A = 1 / s. Which side normalizes: the one with a layer
    # the other lacks (a Normalization), when only one has; else both readings are given.
    mean_a, std_a = -mean / std, 1 / std
    who = _extra_layers_side(ctx)
    ev = [f"inputs agree (same batch digests), but side B's {inside.name_b} pre-activations are side A's times "
          f"{fmt(alpha, 5)} plus a per-unit shift (relative residual {residual:.1e} over {int(used.sum())} "
          "elements positive on both sides)",
          f"the shifts are -{fmt(alpha, 5)}·m·Σ_i W_ij + b_j (1 - {fmt(alpha, 5)}) with m = {fmt(mean, 5)} "
          f"(relative residual {fit_residual:.1e}): relative to A, B feeds (x - {fmt(mean, 4)}) / {fmt(std, 4)}; "
          f"relative to B, A feeds (x - {fmt(mean_a, 4)}) / {fmt(std_a, 4)}"]
    if who is not None:
        ev.append(f"side {who} has layers the other lacks ({', '.join(_extra_layers(ctx))}): side {who} normalizes")
    ev.append(f"losses A {fmt(ctx.a.loss)}, B {fmt(ctx.b.loss)}")
    m, sd = (mean_a, std_a) if who == "A" else (mean, std)
    title = (f"Side {who} normalizes its inputs inside its step: (x - {fmt(m, 4)}) / {fmt(sd, 4)}" if who else
             f"One side normalizes its inputs inside its step: B's are (x - {fmt(mean, 4)}) / {fmt(std, 4)} of A's "
             f"(or A's (x - {fmt(mean_a, 4)}) / {fmt(std_a, 4)} of B's)")
    return [Finding("input-normalization", title, tuple(ev), "Normalize the inputs once, the same way on both sides.",
                    fit=1.0,
                    numbers={"mean": m, "std": sd, "side": who, "residual": residual, "fit_residual": fit_residual,
                             "b_relative_to_a": [mean, std]})]
