"""Bug: the hidden layer is frozen (``trainable = False``), as when a fine-tuning script
freezes a backbone and the comparison script does not.

Keras then lists ``dense/kernel`` and ``dense/bias`` among the model's non-trainable
variables, not its trainable ones: the optimizer never sees them. Against ``fit.py``
xentdbg pairs them with A's trainable ``dense/kernel`` and ``dense/bias`` (same layer,
same shapes), starts both from A's values, and reports at step 0 that A updates them and
B does not: "B does not train `dense/kernel`".

Fix: set ``layer.trainable = True`` (or freeze the same layer on both sides).
"""

from common import fit, mlp


def setup(data):
    layers = mlp()
    layers[0].trainable = False
    return fit(layers)
