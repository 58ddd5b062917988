"""Probes for one device against data-parallel training: a loss each replica averages
over its own samples while the replicas' gradients are summed (``tf.distribute``, or a JAX
step's ``psum``), uneven slices, BatchNorm statistics computed per replica, a learning
rate scaled by the replica count. They read what a distributed side recorded per replica before
the reduction (:meth:`Side.replica_tensors`). Pure numpy.

The facts they rest on (TensorFlow 2.21, Keras 3.15):

- Keras's optimizer under a ``tf.distribute`` strategy *sums* the replicas' gradients
  before applying them (``all_reduce(SUM)``: keras/src/backend/tensorflow/optimizer.py:141-180).
  So each replica's loss must be its samples' losses divided by the *global* batch
  (``tf.nn.compute_average_loss``); a replica's mean over its own ``n / R`` samples makes
  the applied gradient ``R`` times one device's.
- BatchNormalization (``synchronized=False``, the default) takes the batch statistics over
  the replica's own slice (keras/src/layers/normalization/batch_normalization.py:434-440),
  and its moving statistics are mirrored variables with aggregation ``none``
  (:262-275), which each replica assigns in its own context: the replicas' copies part,
  and reading the variable gives the first replica's.
- Flax linen's ``BatchNorm`` (flax 0.12) takes the batch statistics over the samples the
  replica sees unless it is given ``axis_name``, which ``jax.lax.pmean``-s them over that
  mesh axis (flax/linen/normalization.py:118-135), and updates ``batch_stats`` the same
  way, ``ra = m ra + (1 - m) stat`` (:400-404). A ``jax.shard_map`` step that leaves
  ``axis_name`` out normalizes each device's slice with its own statistics.
"""

from __future__ import annotations

import numpy as np

from xentdbg.compare.params import layer_and_role
from xentdbg.diagnose.context import Context, Finding, Side, fmt, ratio
from xentdbg.diagnose.optimizer import sgd_learning_rate
from xentdbg.diagnose.training import bn_input

_TOL = 1e-3  # relative residual below which a linear explanation is accepted


def data_parallel(ctx: Context) -> tuple[Side, Side] | None:
    """``(distributed side, one-device side)``, when exactly one side trained on several replicas."""
    a, b = ctx.a, ctx.b
    if a.replicas > 1 and b.replicas == 1:
        return a, b
    if b.replicas > 1 and a.replicas == 1:
        return b, a
    return None


def _jax(side: Side) -> bool:
    """Whether the side's replicas are the devices of a JAX mesh (``JaxStep(mesh=...)``
    reports its ``mesh``), not a ``tf.distribute`` strategy's."""
    return "mesh" in side.info.framework


def _sum(arrays: list[np.ndarray]) -> np.ndarray:
    return np.sum([np.asarray(a, np.float64) for a in arrays], axis=0)


def unscaled_replica_loss(ctx: Context) -> list[Finding]:
    """Each replica averaged its loss over its own samples, and the optimizer summed the
    replicas' gradients: the distributed side ``D`` (``R`` replicas) applied
    ``g_D = R g_1`` for every parameter, against the one-device side's ``g_1``.

    Evidence from the replicas: their local gradients sum to the applied ones (the
    all-reduce), and when their losses are recorded, they *average* to the one-device
    loss (each a mean over ``n / R`` samples) where correctly scaled losses *sum* to it."""
    sides = data_parallel(ctx)
    if sides is None or ctx.agrees("gradients"):
        return []
    d, one = sides
    replicas = d.replicas
    grads = ctx.param_triples("gradients")  # (name, A, B)
    fits = [(name, *(ratio(gb, ga) if d is ctx.b else ratio(ga, gb))) for name, ga, gb in grads]
    if not fits or any(not np.isfinite(c) or abs(c / replicas - 1) > _TOL or res > _TOL for _, c, res in fits):
        return []
    worst = max(res for _, _, res in fits)
    ev = [f"side {d.label} trains on {replicas} replicas; every gradient it applied is {fmt(fits[0][1], 5)} x "
          f"side {one.label}'s ({len(fits)} tensors, ratios {fmt(min(c for _, c, _ in fits), 5)}.."
          f"{fmt(max(c for _, c, _ in fits), 5)}, largest relative residual {worst:.1e})"]
    local = d.replica_tensors("gradients")
    applied = dict(d.tensors("gradients"))
    if len(local) == replicas and all(len(r) == len(applied) for r in local):
        gaps = [float(np.max(np.abs(_sum([dict(r)[n] for r in local]) - np.asarray(g, np.float64))))
                / max(float(np.max(np.abs(g))), 1e-30) for n, g in applied.items()]
        how = ("the step sums the replicas' gradients" if _jax(d) else
               "the optimizer sums the replicas' gradients (all-reduce SUM)")
        ev.append(f"the {replicas} replicas' local gradients sum to the applied ones (largest relative gap "
                  f"{max(gaps):.1e}): {how}")
    losses = [float(np.asarray(r[0][1]).reshape(())) for r in d.replica_tensors("loss") if r]
    if len(losses) == replicas and np.isfinite(one.loss) and one.loss != 0:
        mean, total = float(np.mean(losses)), float(np.sum(losses))
        shown = ", ".join(fmt(v, 5) for v in losses)
        if abs(mean / one.loss - 1) < 0.1 < abs(total / one.loss - 1):
            ev.append(f"the replicas' losses {shown} average to {fmt(mean, 5)}, near side {one.label}'s loss "
                      f"{fmt(one.loss, 5)}: each is a mean over the replica's own samples; divided by the global "
                      f"batch they would sum to it (their sum is {fmt(total, 5)})")
    if not ctx.agrees("loss") and one.loss and abs(d.loss / one.loss - replicas) < _TOL * replicas:
        ev.append(f"the loss side {d.label} returns is {replicas} x side {one.label}'s: the sum of those means")
    if _jax(d):
        fix = ("Average the replicas' gradients: jax.lax.pmean(grads, axis), not psum. Under jax.shard_map with "
               "its default check_vma=True, jax.grad of parameters replicated over the mesh already returns their "
               "sum over the devices (the transpose of the implicit pvary is a psum: jax/_src/lax/parallel.py:"
               "2453-2456, JAX 0.10), so a pmean after it leaves the sum: divide by the device count there, pass "
               "check_vma=False, or differentiate the pmean-ed loss outside the shard_map.")
    else:
        fix = ("Divide each replica's per-example losses by the global batch size: "
               "loss = tf.nn.compute_average_loss(per_example_loss) (or reduce_sum(per_example_loss) / "
               "global_batch), not reduce_mean over the replica's samples; the optimizer then sums the replicas' "
               "gradients into the one-device gradient.")
    return [Finding("unscaled-replica-loss",
                    f"Side {d.label}'s replicas average their loss over their own samples: the summed gradients "
                    f"are {replicas}x", tuple(ev), fix,
                    numbers={"side": d.label, "replicas": replicas, "factor": fits[0][1]})]


def per_replica_batchnorm(ctx: Context) -> list[Finding]:
    """BatchNorm statistics per replica on the distributed side ``D``, over the whole batch
    on the one-device side. For each BatchNorm moving mean, from the pre-step ``s0`` and
    the input rows ``h`` of the layer (each side's own activation before it; ``D``'s
    joined in replica order, replica ``r`` holding the rows of its slice)::

        one device:     s1   = m s0 + (1 - m) mean(h)
        replica r of D: s1_r = m s0 + (1 - m) mean(h_r)

    ``1 - m`` is fitted on the one-device side and must fit every replica's copy too."""
    sides = data_parallel(ctx)
    if sides is None:
        return []
    d, one = sides
    copies = d.replica_tensors("state")
    slices = d.record.replica_sizes()
    if len(copies) != d.replicas or not all(copies) or len(slices) != d.replicas or not all(slices):
        return []  # no per-replica state (a JAX step under jit sharding records none)
    before_d, before_one = dict(d.state_before), dict(one.state_before)
    after_one = dict(one.tensors("state"))
    state_a, state_b = ctx.a.tensors("state"), ctx.b.tensors("state")
    pairs = {(state_a[i][0], state_b[j][0]) for i, j in ctx.pairing.state if i < len(state_a) and j < len(state_b)}
    ev, layers = [], []
    for name_a, name_b in sorted(pairs):
        name_d, name_one = (name_a, name_b) if d is ctx.a else (name_b, name_a)
        if (layer_and_role(name_d)[1] not in ("moving_mean", "mean") or name_d not in before_d
                or name_one not in after_one or any(name_d not in dict(c) for c in copies)):
            continue
        h_d, h_one = bn_input(d, name_d), bn_input(one, name_one)
        if h_d is None or h_one is None or len(h_d) % sum(slices):
            continue
        s0, s1 = np.asarray(before_one[name_one], np.float64), np.asarray(after_one[name_one], np.float64)
        step, res_one = ratio(s1 - s0, h_one.mean(axis=0) - s0)
        if not 0.0 < step <= 1.0 or res_one > _TOL:
            continue
        rows = len(h_d) // sum(slices)  # rows per sample (spatial positions)
        starts = np.cumsum([0, *[n * rows for n in slices]])
        d0 = np.asarray(before_d[name_d], np.float64)
        residuals, spread = [], 0.0
        local = [np.asarray(dict(c)[name_d], np.float64) for c in copies]
        for r, copy in enumerate(local):
            predicted = d0 + step * (h_d[starts[r]:starts[r + 1]].mean(axis=0) - d0)
            residuals.append(float(np.max(np.abs(copy - predicted))) / max(float(np.max(np.abs(copy - d0))), 1e-30))
            spread = max(spread, float(np.max(np.abs(copy - local[0]))))
        global_fit = d0 + step * (h_d.mean(axis=0) - d0)
        off_global = float(np.max(np.abs(local[0] - global_fit))) / max(float(np.max(np.abs(local[0] - d0))), 1e-30)
        if max(residuals) > _TOL or spread == 0.0 or off_global < 10 * _TOL:
            continue
        layers.append("/".join(layer_and_role(name_d)[0]))
        ev.append(f"{name_d}: side {d.label}'s {d.replicas} replicas hold different copies after step "
                  f"{ctx.step.step} (up to {fmt(spread, 3)} apart); copy r fits m * moving + (1 - m) * the mean of "
                  f"replica r's {'/'.join(str(n) for n in slices)} samples (m = {fmt(1 - step, 4)}, relative "
                  f"residuals <= {max(residuals):.1e}), not the mean of the whole batch (off by {off_global:.2g} of "
                  f"the update)")
        ev.append(f"side {one.label}'s {name_one} fits the mean of all {sum(slices)} samples (residual {res_one:.1e})")
    if not layers:
        return []
    if not ctx.agrees("loss"):
        ev.append(f"the normalization uses the same per-replica statistics, so the loss and gradients of step "
                  f"{ctx.step.step} differ too (loss {fmt(ctx.a.loss, 6)} against {fmt(ctx.b.loss, 6)})")
    if _jax(d):
        axis = d.info.framework.get("batch_axis")
        named = f'axis_name="{axis}"' if axis else "axis_name=<the mesh axis the batch is split over>"
        fix = (f"Give side {d.label}'s flax.linen.BatchNorm {named}: linen then pmean-s the batch statistics "
               "over the devices of that mesh axis, which match one device's; or accept per-replica statistics.")
    else:
        fix = (f"Build side {d.label}'s BatchNormalization with synchronized=True (Keras 3, TensorFlow backend; "
               "tf.keras.layers.experimental.SyncBatchNormalization in Keras 2): the replicas all-reduce the batch "
               "statistics, which then match one device's; or accept per-replica statistics.")
    return [Finding("per-replica-batchnorm",
                    f"Side {d.label}'s BatchNorm normalizes each replica with its own batch statistics",
                    tuple(ev), fix, numbers={"side": d.label, "replicas": d.replicas, "layers": layers})]


def uneven_replica_batches(ctx: Context) -> list[Finding]:
    """A global batch of ``n`` samples split unevenly over the replicas (``n_r`` each), and
    each replica dividing its loss by ``D_r = R n_r``: ``tf.nn.compute_average_loss``
    without ``global_batch_size`` takes the replica's own batch size times the replica
    count (tensorflow/python/ops/nn_impl_distribute.py:131-134, TF 2.21). Replica ``r``'s
    local gradient is ``L_r = sum_{i in r} g_i / D_r`` and one device's ``G = sum_i g_i / n``, so

        G = sum_r (D_r / n) L_r,

    fitted by least squares over every gradient element: the coefficients give each
    replica's divisor ``D_r``. Equal divisors ``n`` would agree with one device."""
    sides = data_parallel(ctx)
    if sides is None or ctx.agrees("gradients"):
        return []
    d, one = sides
    sizes = d.record.replica_sizes()
    local = d.replica_tensors("gradients")
    if len(sizes) != d.replicas or len(local) != d.replicas or len(set(sizes)) < 2:
        return []
    n = sum(sizes)
    names = [name for name, _ in d.tensors("gradients")]
    one_grads = dict(one.tensors("gradients"))
    pairs = {(ctx.a.tensors("gradients")[i][0], ctx.b.tensors("gradients")[j][0]) for i, j in ctx.pairing.params}
    to_one = {nd: no for na, nb in pairs for nd, no in [((na, nb) if d is ctx.a else (nb, na))]}
    if not all(name in to_one and to_one[name] in one_grads for name in names):
        return []
    columns = np.stack([np.concatenate([np.ravel(np.asarray(dict(r)[name], np.float64)) for name in names])
                        for r in local], axis=1)
    target = np.concatenate([np.ravel(np.asarray(one_grads[to_one[name]], np.float64)) for name in names])
    coef, *_ = np.linalg.lstsq(columns, target, rcond=None)
    residual = float(np.linalg.norm(columns @ coef - target) / max(float(np.linalg.norm(target)), 1e-30))
    divisors = coef * n
    if residual > _TOL or np.any(divisors <= 0):
        return []
    by_size = [float(dv) / (d.replicas * s) for dv, s in zip(divisors, sizes) if s]
    if max(abs(k - 1) for k in by_size) > 1e-2:
        return []  # another weighting: not the replicas' own batch sizes
    shown = ", ".join(str(int(round(v))) for v in divisors)
    ev = [f"side {d.label}'s global batch of {n} samples reached its {d.replicas} replicas as "
          f"{'/'.join(map(str, sizes))} samples",
          f"side {one.label}'s gradients are the replicas' local gradients weighted by D_r / {n} with D_r = {shown} "
          f"(relative residual {residual:.1e}): replica r divided its loss by {d.replicas} x its own batch, "
          f"not by the global {n}",
          f"so the samples of the {min(sizes)}-sample replica weigh {fmt(max(sizes) / min(sizes), 4)} x the others'"]
    fix = (f"Divide by the global batch: tf.nn.compute_average_loss(per_example_loss, global_batch_size={n}) "
           "(the size of the batch before it was split), or keep every global batch divisible by the replica count "
           "(Dataset.batch(n, drop_remainder=True)).")
    return [Finding("uneven-replica-batches",
                    f"Side {d.label}'s replicas got {'/'.join(map(str, sizes))} samples and each divided its loss by "
                    f"{d.replicas} x its own batch", tuple(ev), fix,
                    numbers={"side": d.label, "sizes": sizes, "divisors": [float(v) for v in divisors]})]


def learning_rate_replica_scaling(ctx: Context) -> list[Finding]:
    """The gradients agree and both sides apply ``dw = -lr g`` (SGD), with learning rates
    whose ratio is the distributed side's replica count ``R`` (or ``1 / R``): the linear
    scaling rule (``lr x R`` for a batch ``R`` times larger) applied on one side although
    both train on the same global batch, or a rate tuned per replica left unscaled."""
    sides = data_parallel(ctx)
    if sides is None or not ctx.agrees("gradients") or (ctx.agrees("weights") and ctx.agrees("updates")):
        return []
    d, one = sides
    grads = ctx.param_triples("gradients")
    after, before = ctx.param_triples("weights"), ctx.before_triples()
    if not grads or len(after) != len(grads) or len(before) != len(grads):
        return []
    gs = [np.asarray(g, np.float64) for _, g, _ in grads]
    lrs = {}
    for label, k in (("A", 1), ("B", 2)):
        dws = [np.asarray(w[k], np.float64) - np.asarray(w0[k], np.float64) for w, w0 in zip(after, before)]
        lrs[label] = sgd_learning_rate(dws, gs)
    if lrs["A"] is None or lrs["B"] is None or lrs[one.label] == 0:
        return []
    q = lrs[d.label] / lrs[one.label]
    replicas = d.replicas
    scaled = "up" if abs(q / replicas - 1) < _TOL else "down" if abs(q * replicas - 1) < _TOL else None
    if scaled is None:
        return []
    ev = [f"the gradients agree in step {ctx.step.step}; each side's update is -lr * gradient: effective lr "
          f"side {d.label} {fmt(lrs[d.label], 4)}, side {one.label} {fmt(lrs[one.label], 4)}",
          f"side {d.label} trains on {replicas} replicas and its rate is {fmt(q, 5)} x side {one.label}'s: "
          f"{'times' if scaled == 'up' else '1 /'} the replica count",
          "both sides train on the same global batch, so the same rate gives the same step"]
    fix = ("Use one learning rate for one global batch. The linear scaling rule (lr x R) applies when the global "
           "batch grows R times (the per-replica batch kept); here it did not grow.")
    return [Finding("learning-rate-replica-scaling",
                    f"Side {d.label}'s learning rate is {'scaled by' if scaled == 'up' else 'divided by'} its "
                    f"{replicas} replicas for the same global batch", tuple(ev), fix,
                    numbers={"side": d.label, "ratio": q, "replicas": replicas})]
