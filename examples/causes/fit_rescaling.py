"""Cause 6c, preprocessing twice inside the model: a ``Rescaling(1/255)`` layer in front.

Bug: the data is already in 0..1 (``--pixels unit``), and the model adds
``keras.layers.Rescaling(1/255)`` copied from an image tutorial, so its first Dense sees
pixels in 0..1/255. The layer has no weights: the parameter tables still pair, and
xentdbg aligns the layer outputs around the extra layer (it lists it as unpaired), so the
first layer output that differs is the hidden Dense's, exactly 1/255 of ``fit.py``'s.

Fix: normalise in exactly one place (drop the layer, or feed raw pixels).
"""

import keras

from common import fit


def setup(data):
    return fit(front=(keras.layers.Rescaling(1 / 255),), shuffle=False)
