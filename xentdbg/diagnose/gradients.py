"""Loss and gradient probes: a constant factor between the two losses and gradients
(cause 7), and a gradient difference equal to a regularizer's gradient (cause 8). Pure numpy."""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt, ratio

_TOL = 1e-3  # relative residual below which a linear explanation is accepted


def _name_factor(c: float, batch: int | None, classes: int | None) -> str | None:
    named = {2.0: "a factor of 2", 0.5: "a factor of 1/2"}
    if batch:
        named[float(batch)] = f"the batch size {batch}: sum instead of mean over the batch"
        named[1.0 / batch] = f"1/{batch}: mean instead of sum over the batch"
    if classes and classes > 2:
        named[float(classes)] = f"the number of classes {classes}: sum instead of mean over classes"
        named[1.0 / classes] = f"1/{classes}: mean over classes instead of sum"
    return next((v for k, v in named.items() if abs(c / k - 1) < 1e-4), None)


def loss_scale(ctx: Context) -> list[Finding]:
    """Cause 7: ``L_A = c L_B`` and ``g_A = c g_B`` for every parameter, with one ``c``."""
    la, lb = ctx.a.loss, ctx.b.loss
    if ctx.agrees("loss") or not (np.isfinite(la) and np.isfinite(lb)) or lb == 0:
        return []
    c = la / lb
    grads = ctx.param_triples("gradients")
    fits = [(name, *ratio(ga, gb)) for name, ga, gb in grads]
    if not fits or any(not np.isfinite(r) or abs(r / c - 1) > _TOL or res > _TOL for _, r, res in fits):
        return []
    batch = len(ctx.x) if ctx.x is not None else None
    classes = ctx.y.shape[-1] if ctx.y is not None and ctx.y.ndim == 2 else None
    named = _name_factor(c, batch, classes)
    worst = max(res for _, _, res in fits)
    ev: tuple[str, ...] = (f"loss A / loss B = {fmt(la)} / {fmt(lb)} = {fmt(c)}",
                           f"every gradient of A is {fmt(c)} x B's ({len(fits)} tensors, ratios "
                           f"{fmt(min(r for _, r, _ in fits))}..{fmt(max(r for _, r, _ in fits))}, "
                           f"largest relative residual {worst:.1e})")
    if named:
        ev += (f"{fmt(c)} is {named}",)
    title = f"The losses differ by a constant factor {fmt(c)}" + (f" ({named.split(':')[0]})" if named else "")
    if named and "classes" in named:
        fix = ("Sum the cross-entropy over classes and average over the batch, as Keras' categorical_crossentropy "
               "does: -mean(sum(y * log_p, axis=-1)); a mean over the whole (N, C) array also divides by C.")
    else:
        fix = ("Use the same loss reduction on both sides: Keras' default is the mean over the batch "
               "('sum_over_batch_size'); a tf.reduce_sum or reduction='sum' multiplies loss and gradients by N.")
    return [Finding("loss-scale", title, ev, fix, numbers={"factor": c, "named": named})]


def missing_regularization(ctx: Context) -> list[Finding]:
    """Cause 8: ``g_A - g_B = 2 lambda W`` (L2) or ``lambda sign(W)`` (L1) on some kernels,
    zero on the other parameters; the loss differs by ``lambda sum(W^2)`` when it includes it."""
    grads = ctx.param_triples("gradients")
    before = ctx.before_triples()
    if not grads or len(before) != len(grads) or ctx.agrees("gradients") and ctx.agrees("loss"):
        return []
    regularized, untouched = [], []
    penalty = 0.0
    for (name, ga, gb), (_, wa, _) in zip(grads, before):
        d = np.asarray(ga, np.float64) - np.asarray(gb, np.float64)
        scale = max(float(np.max(np.abs(ga))), float(np.max(np.abs(gb))), 1e-30)
        if float(np.max(np.abs(d))) <= 1e-6 * scale:
            untouched.append(name)
            continue
        w = np.asarray(wa, np.float64)
        lam2, res2 = ratio(d, 2 * w)
        lam1, res1 = ratio(d, np.sign(w))
        if res2 <= _TOL:
            regularized.append((name, "L2", lam2, res2, float(np.max(np.abs(d)))))
            penalty += lam2 * float(np.sum(w * w))
        elif res1 <= _TOL:
            regularized.append((name, "L1", lam1, res1, float(np.max(np.abs(d)))))
            penalty += lam1 * float(np.sum(np.abs(w)))
        else:
            return []
    if not regularized or len({np.sign(r[2]) for r in regularized}) != 1:
        return []
    missing = "B" if regularized[0][2] > 0 else "A"
    ev = [f"{name}: gA - gB = {'2*lambda*W' if kind == 'L2' else 'lambda*sign(W)'} with lambda = {fmt(lam, 4)} "
          f"(relative residual {res:.1e}, max |gA - gB| {fmt(dmax, 3)})" for name, kind, lam, res, dmax in regularized]
    if untouched:
        ev.append(f"no difference on {', '.join(untouched)}")
    dl = ctx.a.loss - ctx.b.loss
    if not ctx.agrees("loss"):
        ev.append(f"loss A - loss B = {fmt(dl)}; the penalty at the pre-step weights is {fmt(penalty)}")
    else:
        ev.append(f"the losses agree: side {missing} returns the penalised loss but differentiates the loss without it")
    kinds = "/".join(sorted({r[1] for r in regularized}))
    return [Finding("missing-regularization", f"Side {missing} leaves out the {kinds} regularization of "
                    + ", ".join(r[0] for r in regularized), tuple(ev),
                    f"Add the regularization losses to side {missing}'s loss inside the GradientTape: "
                    "loss = loss_fn(y, model(x, training=True)) + sum(model.losses).",
                    numbers={"side": missing, "lambda": {r[0]: r[2] for r in regularized}, "penalty": penalty})]
