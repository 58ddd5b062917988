"""The numbers behind a diagnosis, from the traces ``xentdbg compare --save-traces DIR`` keeps.

    .venv/bin/python examples/causes/measure.py DIR [STEP]

For step STEP (default 0) it prints, B against A: whether the input batches are the
same; per layer, the median ratio of the outputs; the loss ratio; per parameter, the
gradient ratio and ``(g_A - g_B) / w`` (``2 * lambda`` for a missing L2 penalty); the
update ratio ``dw_B / dw_A`` and each side's effective step ``dw / -g`` (the learning rate,
for plain SGD). Medians over the elements whose A value is above 1e-3 of A's largest,
so near-zero elements do not dominate. A constant ratio points at a scale bug: loss
reduction (the batch size), learning rate, preprocessing.
"""

import sys

import numpy as np

import xentdbg


def _ratio(b, a):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.abs(a) > 1e-3 * np.abs(a).max() if np.abs(a).max() > 0 else np.zeros(a.shape, bool)
    return float(np.median(b[keep] / a[keep])) if keep.any() else float("nan")


def _pre_step_weights(trace, step):
    if step == 0:
        return trace.initial()[0]
    return trace.record(step - 1, load=True).arrays("weights")


def main(folder, step=0):
    with xentdbg.load_trace(f"{folder}/a.h5") as ta, xentdbg.load_trace(f"{folder}/b.h5") as tb:
        ra, rb = ta.record(step, load=True), tb.record(step, load=True)
        wa0, wb0 = _pre_step_weights(ta, step), _pre_step_weights(tb, step)
        first_input = next((s for s in ta.steps
                            if s in tb.steps and ta.record(s).digests != tb.record(s).digests), None)
        print(f"step {step}: input batches {'same' if ra.digests == rb.digests else 'DIFFERENT'}; "
              f"first step with different batches: {first_input}")
        acts_a, acts_b = ra.tensors.get("activations", []), rb.tensors.get("activations", [])
        if len(acts_a) == len(acts_b):  # one to one; otherwise see xentdbg's own pairing in its report
            for (name, a), (_, b) in zip(acts_a, acts_b):
                print(f"  activations {name}: median B/A {_ratio(b, a):.6g}")
        print(f"  loss A {ra.loss:.6g}  B {rb.loss:.6g}  B/A {rb.loss / ra.loss:.6g}  A-B {ra.loss - rb.loss:.6g}")
        for i, (name, ga) in enumerate(ra.tensors["gradients"]):
            gb = rb.arrays("gradients")[i]
            wa, wb = ra.arrays("weights")[i], rb.arrays("weights")[i]
            dwa, dwb = wa - wa0[i], wb - wb0[i]
            print(f"  {name}: grad B/A {_ratio(gb, ga):.6g}, max|gA-gB| {np.abs(ga - gb).max():.4g}, "
                  f"(gA-gB)/w {_ratio(ga - gb, wa0[i]):.4g}; dw B/A {_ratio(dwb, dwa):.6g}, "
                  f"dw/-g A {_ratio(-dwa, ga):.4g} B {_ratio(-dwb, gb):.4g}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
