"""Dropout masks drawn from different random streams (other libraries, or the replicas
of a data-parallel side, each drawing its own slice's masks). Pure numpy.

Inverted dropout at rate ``r`` (Keras 3: keras/src/layers/regularization/dropout.py
``call`` -> ``backend.random.dropout``; tf_keras 2.21: tf_keras/src/backend.py:2155-2179
``RandomGenerator.dropout`` -> ``tf.nn.dropout``; Flax: ``nnx.Dropout``) computes

    out = in * keep / (1 - r),    keep ~ Bernoulli(1 - r) per unit,

so where the input is non-zero every output is either 0 or ``c * in`` with the one
constant ``c = 1 / (1 - r)``. Two sides whose dropout inputs agree but whose outputs do
not, each of that form with the same ``c``, drew other masks. Two independent masks
agree on a fraction ``r^2 + (1 - r)^2`` of the units. The libraries draw with different
generators (tf_keras: TensorFlow's legacy stateful ops, seeded from the global seed and
the op's position in its graph; Keras 3: a ``SeedGenerator`` state variable), so the
same seed does not give the same masks across them.
"""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt
from xentdbg.diagnose.distributed import data_parallel

_MASK_RESIDUAL = 1e-5
"""Largest ``|out - c * keep * in| / max|in|`` accepted as inverted dropout: a float32
product and division round to about 1e-7 relative."""


def _as_dropout(x: np.ndarray, out: np.ndarray) -> tuple[float, np.ndarray, float] | None:
    """``(c, keep, residual)`` when ``out = c * keep * x`` for one constant ``c > 1`` and a
    0/1 mask ``keep`` (units with ``x == 0`` count as kept when ``out`` is 0 too: their
    mask is unknown and does not matter); None when ``out`` is not of that form."""
    x, out = np.asarray(x, np.float64).ravel(), np.asarray(out, np.float64).ravel()
    if x.shape != out.shape or not (np.all(np.isfinite(x)) and np.all(np.isfinite(out))):
        return None
    nonzero = x != 0
    kept = nonzero & (out != 0)
    if not kept.any() or kept.sum() == nonzero.sum():
        return None  # nothing kept, or nothing dropped: not a dropout draw
    c = float(np.median(out[kept] / x[kept]))
    if not c > 1.0:
        return None
    keep = kept | ~nonzero
    residual = float(np.max(np.abs(out - c * keep * x)) / max(float(np.max(np.abs(x))), 1e-30))
    return (c, keep, residual) if residual <= _MASK_RESIDUAL else None


def dropout_masks(ctx: Context) -> list[Finding]:
    """The first layer output that diverges has inputs that agree, and both sides' outputs
    are inverted dropout of that input at the same rate, with other masks."""
    diverged = {t.name_a: t for t in ctx.divergent("activations")}
    acts_a, acts_b = ctx.a.activations, ctx.b.activations
    names_a = [n for n, _ in acts_a]
    first = next((k for k, n in enumerate(names_a) if n in diverged), None)
    if first is None or first == 0:
        return []
    t = diverged[names_a[first]]
    names_b = [n for n, _ in acts_b]
    if t.name_b not in names_b or names_b.index(t.name_b) == 0:
        return []
    k_b = names_b.index(t.name_b)
    before_a, before_b = names_a[first - 1], names_b[k_b - 1]
    agreed = any(c.phase == "activations" and c.ok and c.name_a == before_a and c.name_b == before_b
                 for c in ctx.step.tensors)
    if not agreed:
        return []
    fit_a = _as_dropout(acts_a[first - 1][1], acts_a[first][1])
    fit_b = _as_dropout(acts_b[k_b - 1][1], acts_b[k_b][1])
    if fit_a is None or fit_b is None:
        return []
    (ca, keep_a, res_a), (cb, keep_b, res_b) = fit_a, fit_b
    if abs(ca - cb) > 1e-4 * ca:
        return []  # dropout at two rates: a different model, not a different draw
    rate = 1.0 - 1.0 / ca
    same = float(np.mean(keep_a == keep_b))
    independent = rate ** 2 + (1.0 - rate) ** 2
    libraries = [f"{side.library} {side.info.framework.get(side.library, '')}".strip() for side in ctx.sides]
    ev = [
        f"the input of {t.name_a} agrees on both sides ({before_a} | {before_b}, within tolerance); "
        f"its output differs",
        f"side A: output = {fmt(ca, 7)} * mask * input, residual {res_a:.1g} of max|input|; "
        f"side B: {fmt(cb, 7)} * mask * input, residual {res_b:.1g}: inverted dropout at rate "
        f"{fmt(rate, 4)} on both sides (out = in * keep / (1 - r))",
        f"the masks agree on {same:.1%} of the units; two independent masks at that rate agree on "
        f"{independent:.1%} (r^2 + (1 - r)^2)",
    ]
    replicated = _per_replica(ctx, acts_a[first - 1][1], keep_a, keep_b)
    if replicated:
        ev.append(replicated)
    if libraries[0] != libraries[1] and all(libraries):
        ev.append(f"side A runs {libraries[0]}, side B {libraries[1]}: their dropout draws from different "
                  "random generators, so no seed makes their masks agree")
    fix = ("The masks come from each side's random stream, not from the computation. To compare the rest of "
           "the training, run both sides with this Dropout's rate at 0 (or without the layer); to compare the "
           "trainings themselves, compare their losses over many steps, not step by step.")
    cause, title = "dropout-masks", f"{t.name_a} draws other dropout masks on the two sides"
    sides = data_parallel(ctx) if replicated else None
    if sides is not None:
        d = sides[0]
        cause, title = "per-replica-dropout", f"Each of side {d.label}'s {d.replicas} replicas draws its own " \
                                              f"{t.name_a} masks"
        fix = ("Each replica draws the masks of its slice of the batch from its own random stream, so no seed makes "
               f"{d.replicas} replicas draw one device's masks. " + fix)
    return [Finding(cause, title, tuple(ev), fix,
                    numbers={"layer_a": t.name_a, "layer_b": t.name_b, "rate": rate, "masks_agree": same,
                             "independent_agree": independent, "residual_a": res_a, "residual_b": res_b})]



def _per_replica(ctx: Context, x: np.ndarray, keep_a: np.ndarray, keep_b: np.ndarray) -> str | None:
    """When one side trained on several replicas: how the masks agree per replica slice of
    the batch, over the units with a non-zero input (whose mask shows). Each replica draws
    its slice's masks from its own copy of the layer's seed state."""
    sides = data_parallel(ctx)
    if sides is None:
        return None
    d = sides[0]
    sizes = d.record.replica_sizes()
    x = np.asarray(x)
    if len(sizes) != d.replicas or sum(sizes) != len(x) or not all(sizes):
        return None
    shown = np.asarray(x != 0).reshape(len(x), -1)
    same = (keep_a == keep_b).reshape(len(x), -1)
    starts = np.cumsum([0, *sizes])
    parts = [float(same[a:b][shown[a:b]].mean()) if shown[a:b].any() else float("nan")
             for a, b in zip(starts[:-1], starts[1:])]
    return (f"side {d.label} trains on {d.replicas} replicas, each drawing the masks of its own "
            f"{'/'.join(map(str, sizes))} rows from its own random stream: per replica slice the masks agree on "
            + ", ".join(f"{p:.1%}" for p in parts) + " of the units whose input is non-zero")
