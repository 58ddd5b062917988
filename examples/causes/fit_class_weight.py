"""Cause 15, class weights on one side: ``model.fit(..., class_weight={3: 2.0})``.

Bug: the port re-balances the classes (digit 3 counts double) where the reference does
not. ``fit`` turns ``class_weight`` into a per-sample weight ``c[label]``
(keras/src/trainers/data_adapters/data_adapter_utils.py:120-135, Keras 3.15) and its
loss, ``reduction="sum_over_batch_size"``, is ``sum_i w_i l_i / N``: the loss and the
output layer's gradients change, ``sum_i c[y_i] (p_i - y_i) h_i / N``, from the same
weights. xentdbg fits the per-class weights to each side's output-layer gradients and
recovers ``c``.

Fix: pass the same ``class_weight`` (or ``sample_weight``) on both sides, or none.
"""

from common import fit


def setup(data):
    return fit(shuffle=False, class_weight={3: 2.0})
