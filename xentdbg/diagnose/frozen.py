"""A layer one side trains and the other has frozen (``trainable = False``). Pure numpy.

Keras moves a frozen layer's variables from ``trainable_variables`` to
``non_trainable_variables`` (keras/src/layers/layer.py, ``Layer.trainable`` setter and the
``trainable_variables`` / ``non_trainable_variables`` properties), so the optimizer never
receives them. :func:`~xentdbg.compare.params.match_parameters` pairs such a parameter
with the other side's state tensor of the same layer and shape (:class:`Frozen`), both
start from the same values, and the comparison sets the trainer's weights against the
holder's state after every step.

The evidence: over the step, the trainer's tensor moves (``max|w_after - w_before| > 0``)
while the holder's stays bitwise what it was (``w_after == w_before``).
"""

from __future__ import annotations

import numpy as np

from xentdbg.diagnose.context import Context, Finding, fmt


def frozen_parameter(ctx: Context) -> list[Finding]:
    """Name the frozen parameters whose values parted in this step."""
    divergent = {t.name_a for t in ctx.step.divergences} | {t.name_b for t in ctx.step.divergences}
    hits = []
    for f in ctx.pairing.frozen:
        if f.name not in divergent and f.held_as not in divergent:
            continue
        trainer, holder = (ctx.a, ctx.b) if f.trainer == "A" else (ctx.b, ctx.a)
        after_t, before_t = trainer.tensors("weights"), trainer.weights_before
        after_h, before_h = holder.tensors("state"), holder.state_before
        if f.param >= min(len(after_t), len(before_t)) or f.state >= min(len(after_h), len(before_h)):
            continue
        moved = float(np.max(np.abs(np.asarray(after_t[f.param][1], np.float64)
                                    - np.asarray(before_t[f.param][1], np.float64)), initial=0.0))
        still = np.array_equal(np.asarray(after_h[f.state][1]), np.asarray(before_h[f.state][1]))
        if moved > 0 and still:
            hits.append((f, moved))
    if not hits:
        return []
    first = hits[0][0]
    names = ", ".join(f"`{f.held_as}`" for f, _ in hits)
    ev = [f"side {f.trainer} updates {f.name} by up to {fmt(moved, 4)} in step {ctx.step.step}; side {f.holder} "
          f"holds it as non-trainable state ({f.held_as}) and it stays bitwise equal" for f, moved in hits]
    ev.append(f"xentdbg paired side {first.holder}'s non-trainable tensors with side {first.trainer}'s trainable "
              "ones of the same layer and shape, and started both from the same values")
    return [Finding("frozen-layer", f"{first.holder} does not train {names}", tuple(ev),
                    f"Set `trainable = True` on that layer in side {first.holder} (or freeze it on side "
                    f"{first.trainer} too): a frozen layer's variables never reach the optimizer.",
                    numbers={"frozen": [f.to_dict() for f, _ in hits], "moved": [m for _, m in hits]})]
