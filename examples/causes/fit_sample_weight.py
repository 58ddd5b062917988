"""Cause 15b, per-sample weights on one side: ``model.fit(..., sample_weight=w)``.

Bug: the reference weights every training sample (here a label-confidence weight drawn
once, seeded, between 0.5 and 1.5); the port (``loop.py``) drops the weights. fit's loss
is ``sum_i w_i l_i / N`` (``reduction="sum_over_batch_size"``,
keras/src/losses/loss.py:140-194, Keras 3.15), so from the same weights the output
layer's gradients are ``sum_i w_i (p_i - y_i) h_i / N`` on this side and the same without
``w_i`` on the other. With 100 samples per batch against 650 gradient elements of the
output layer, xentdbg solves for the 100 weights of the batch and finds fit's ``w``.

Fix: pass the same ``sample_weight`` on both sides (multiply the loop's per-sample
losses by the batch's weights before the mean), or none.
"""

import numpy as np

from common import fit


def setup(data):
    weights = np.random.default_rng(0).uniform(0.5, 1.5, len(data.x)).astype("float32")
    return fit(shuffle=False, sample_weight=weights)
