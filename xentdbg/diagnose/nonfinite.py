"""Where NaN or Inf first appears on one side only, and what produced it.

The step's tensors are read in capture order (inputs, layer outputs forward, loss,
gradients nearest the loss first, state, weights). The first one that is non-finite on
one side where the other side is finite is where the non-finite values enter; the
operation that produced it is the one between that tensor and the last finite one
before it: a layer (its input is finite, its output is not), the loss (every layer
output is finite), the backward pass (the loss is finite, a gradient is not) or the
update (loss and gradients are finite, a weight is not). Pure function.
"""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import TensorComparison
from xentdbg.diagnose.context import Context, Finding, Side, fmt

_ORDER = ("activations", "loss", "gradients", "state", "weights")
_WHERE = {
    "inputs": ("the input batch", "Check the data pipeline of that side: the batch itself holds NaN or Inf."),
    "loss": ("the loss computation",
             "Guard the loss against log(0), division by zero and overflow (compute cross-entropy from logits)."),
    "gradients": ("the backward pass",
                  "Look for operations whose derivative is infinite where their value is finite (sqrt or log at 0, "
                  "a clip or where whose other branch overflows)."),
    "state": ("the update of the non-trainable state",
              "Check that side's BatchNorm/state update (a variance of an empty or constant batch, a momentum)."),
    "weights": ("the optimizer update",
                "Check that side's optimizer (learning rate, epsilon, a division by a zero second moment)."),
}


def _counts(a: np.ndarray) -> str:
    nan = int(np.count_nonzero(np.isnan(a)))
    pos = int(np.count_nonzero(np.isposinf(a)))
    neg = int(np.count_nonzero(np.isneginf(a)))
    parts = [f"{n} {what}" for n, what in ((nan, "NaN"), (pos, "+Inf"), (neg, "-Inf")) if n]
    return ", ".join(parts)


def _value(a: np.ndarray) -> str:
    if a.size == 1:
        return fmt(float(a.reshape(())))
    finite = a[np.isfinite(a)]
    return f"finite, |x| up to {fmt(float(np.max(np.abs(finite))))}" if finite.size else "non-finite"


def _tensor(side: Side, t: TensorComparison) -> np.ndarray | None:
    name = t.name_a if side.label == "A" else t.name_b
    return next((np.asarray(a) for n, a in side.tensors(t.phase) if n == name), None)


def nonfinite_origin(ctx: Context) -> list[Finding]:
    """The first tensor of the step that is NaN/Inf on one side only, and the operation
    that turned finite values into it."""
    first = next((t for t in ctx.step.tensors if t.metrics is not None and t.metrics.same_shape
                  and t.metrics.nonfinite_mismatch), None)
    if first is None or first.metrics is None:
        return []
    m = first.metrics
    label = "A" if m.nonfinite_a > m.nonfinite_b else "B"
    bad, good = (ctx.a, ctx.b) if label == "A" else (ctx.b, ctx.a)
    xb, xg = _tensor(bad, first), _tensor(good, first)
    if xb is None or xg is None:
        return []
    name = first.name_a if label == "A" else first.name_b
    ev = [f"{first.label}: side {label} holds {_counts(xb)} of {xb.size} elements; side {good.label} "
          f"{'also ' + _counts(xg) if m.nonfinite_a and m.nonfinite_b else _value(xg)}"
          + (f" (side {label}: {fmt(float(xb.reshape(())))})" if xb.size == 1 else "")]
    if first.phase == "activations":
        acts = bad.activations
        k = next((i for i, (n, _) in enumerate(acts) if n == name), None)
        before = "the input batch" if not k else f"{acts[k - 1][0]}'s output"
        ev.append(f"{before} is finite on side {label}: layer {name} produced the non-finite values")
        where = f"layer {name}"
        fix = (f"Find what makes {name} overflow or divide by zero on side {label} (unnormalized inputs, exp of "
               "large values, a log or sqrt of zero), or remove the code that injects it.")
    else:
        where, fix = _WHERE.get(first.phase, (first.phase, "Check that side's computation of this tensor."))
        earlier = _ORDER[: _ORDER.index(first.phase)] if first.phase in _ORDER else ()
        finite_before = [p for p in earlier if p != "state" and bad.tensors(p)
                         and all(np.all(np.isfinite(x)) for _, x in bad.tensors(p))]
        if finite_before:
            ev.append(f"side {label}'s {', '.join(finite_before)} in this step are finite: {where} produced the "
                      "non-finite values")
    return [Finding("nonfinite-origin", f"NaN/Inf first appears on side {label}, in {where}", tuple(ev), fix,
                    numbers={"side": label, "phase": first.phase, "tensor": name, "step": first.step,
                             "nonfinite": int(np.count_nonzero(~np.isfinite(xb))), "size": int(xb.size)})]
