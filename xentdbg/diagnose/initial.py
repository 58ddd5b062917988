"""Initial-weights probe: the two sides started from different weights. Pure numpy.

With ``--init a`` (the default) B starts from A's initial weights, and the cross-feed
gives both sides the same pre-step values at every flagged step, so this probe stays
silent. With ``--init own`` each side keeps the weights its setup built, step 0 is judged
on its recorded values, and a difference in the weights *before* the step explains every
difference after it.
"""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt


def initial_weights(ctx: Context) -> list[Finding]:
    """The weights before the first divergent step differ beyond tolerance on a side's start."""
    if ctx.step.step != 0:
        return []
    tol = ctx.tolerance.for_phase("weights")
    differ = []
    for name, a, b in ctx.before_triples():
        if a.shape != b.shape or a.size == 0:
            continue
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        scale = float(max(np.max(np.abs(a64)), np.max(np.abs(b64))))
        diff = float(np.max(np.abs(a64 - b64)))
        if diff <= tol.atol + tol.rtol * scale:
            continue
        na, nb = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
        cosine = float(a64 @ b64) / (na * nb) if na and nb else float("nan")
        differ.append((name, diff, cosine, float(a64.std()), float(b64.std())))
    if not differ:
        return []
    ev = [f"{len(differ)} of {len(ctx.before_triples())} parameters differ before step 0 (the sides' own initial "
          "weights, --init own)"]
    for name, diff, cosine, sa, sb in differ[:6]:
        spread = f"std A {fmt(sa, 3)}, B {fmt(sb, 3)}" + (f" (ratio {fmt(sb / sa, 3)})" if sa else "")
        ev.append(f"{name}: max|A−B| {fmt(diff, 3)}, cosine {fmt(cosine, 3)}, {spread}")
    stds = [(sa, sb) for _, _, _, sa, sb in differ if sa and sb]
    if stds and all(abs(sb / sa - 1) < 0.1 for sa, sb in stds):
        ev.append("the spreads agree within 10%: the same initializer drawn with other random numbers (a seed)")
    elif stds:
        ev.append("the spreads differ: different initializers or scales")
    return [Finding("initial-weights", "The two sides start from different initial weights", tuple(ev),
                    "Start both from the same weights: drop --init own (B then starts from A's weights), or seed "
                    "and initialize both sides the same way.", fit=1.0,
                    numbers={"differ": [d[0] for d in differ]})]
