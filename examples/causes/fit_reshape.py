"""Clean: the same network with two layers without weights in front, ``Reshape((28, 28))``
then ``Flatten()`` (as a port from an image model might keep them). They change no
number: against ``fit.py`` every loss, gradient and weight is bitwise equal. The layer
outputs pair around the two extra layers, which the report lists as unpaired."""

import keras

from common import fit


def setup(data):
    return fit(front=(keras.layers.Reshape((28, 28)), keras.layers.Flatten()), shuffle=False)
