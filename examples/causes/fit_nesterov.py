"""Cause 9b, optimizer variant: SGD with Nesterov momentum (as in case 2), ``model.fit``.

Side A of cause 9b; B is loop_momentum.py."""

import keras

from common import LEARNING_RATE, fit


def setup(data):
    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=0.9, nesterov=True)
    return fit(optimizer=optimizer, shuffle=False)
