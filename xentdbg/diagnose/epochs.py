"""An epoch that repeats an earlier epoch's order on one side. Pure Python over digests.

``model.fit(shuffle=True)`` on arrays draws one permutation per epoch with
``tf.random.shuffle``. Keras 2 (tf_keras 2.21) builds one index dataset repeated over all
epochs and one iterator for the whole fit, so the shuffle keeps drawing
(tf_keras/src/engine/data_adapter.py:292-305, :421-423). Keras 3 (3.15) builds a new
iterator each epoch (keras/src/trainers/epoch_iterator.py:111,
keras/src/backend/tensorflow/trainer.py:751-759) over a dataset that is not repeated
(keras/src/trainers/data_adapters/array_data_adapter.py:107-134), which restarts the
stateful shuffle op: under a global seed (``set_random_seed``) every epoch gets the
first epoch's permutation. So the two agree on epoch 1 and part at the first step of
epoch 2. Measured (N = 10, ``set_random_seed(0)``, three epochs): tf_keras
``[2,0,5,8,7,1,9,6,3,4], [2,9,4,7,1,8,5,6,0,3], [4,7,6,0,1,2,8,5,3,9]``; Keras 3 the
first permutation three times.
"""

from __future__ import annotations

from xentdbg.diagnose.context import Context, Finding


def _digest(ctx_step, side: str) -> str | None:
    for t in ctx_step.tensors:
        if t.phase == "inputs" and t.name_a == "x":
            value = t.value_a if side == "A" else t.value_b
            return value if isinstance(value, str) else None
    return None


def repeated_epoch_order(ctx: Context) -> list[Finding]:
    """The inputs diverge first at step ``k``; one side's batch there is, by its digest, the
    very batch (same samples, same order) it trained on at an earlier step ``j``, and so
    are its batches from ``j`` on until ``k``'s epoch began again; the other side's is new."""
    first = ctx.step.first
    if first is None or first.phase != "inputs":
        return []
    k = ctx.step.step
    repeats: dict[str, int] = {}
    for side in "AB":
        now = _digest(ctx.step, side)
        earlier = [c.step for c in ctx.history if c.step < k and now is not None and _digest(c, side) == now]
        if earlier:
            repeats[side] = earlier[0]
    if len(repeats) != 1:
        return []
    side, j = next(iter(repeats.items()))
    other = "B" if side == "A" else "A"
    ev = [f"side {side}'s batch at step {k} is, bitwise, the batch it trained on at step {j} (the same samples in "
          f"the same order); side {other}'s batch at step {k} is none it trained on before",
          f"the two sides agreed on every batch before step {k}"
          if all(t.ok for c in ctx.history if c.step < k for t in c.tensors if t.phase == "inputs")
          else "earlier batches differed too"]
    if ctx.runs(side, "keras") and ctx.runs(other, "tf_keras"):
        ev.append(f"side {side} runs Keras 3, whose fit starts a new iterator each epoch and so, under a global "
                  "seed, shuffles every epoch into the first epoch's order (keras/src/trainers/epoch_iterator.py:111, "
                  "keras/src/trainers/data_adapters/array_data_adapter.py:107-134); side "
                  f"{other} runs Keras 2, whose fit keeps one shuffled stream for all epochs "
                  "(tf_keras/src/engine/data_adapter.py:292-305)")
    fix = (f"Side {side} repeats step {j}'s order from step {k} on. To compare batch by batch, pass shuffle=False "
           "on both sides (or feed a tf.data pipeline shuffled with reshuffle_each_iteration=True, the same on both).")
    return [Finding("repeated-epoch-order", f"Side {side} trains step {k} on its step-{j} batch again",
                    tuple(ev), fix, numbers={"side": side, "step": k, "repeats_step": j})]
