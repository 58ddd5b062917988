"""Cause 11, label smoothing on one side: ``CategoricalCrossentropy(label_smoothing=0.1)``.

Bug: the reference trains on one-hot targets; the port copies a loss with
``label_smoothing=0.1`` from a recipe, so its targets are ``0.9·y + 0.01``. From the same
weights the output layer's bias gradients then differ by ``0.1·(ȳ − 1/10)`` per class,
``ȳ`` the batch's class frequencies, which is how xentdbg recovers the factor.

Fix: use the same ``label_smoothing`` on both sides.
"""

import keras

from common import fit


def setup(data):
    return fit(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), shuffle=False)
