"""Cause 9c, optimizer variant across frameworks: Keras ``Adam()`` defaults, ``model.fit``.

Side A of cause 9c; B is jax_adam.py (optax.adam) and the control jax_adam_keras_eps.py."""

import keras

from common import fit


def setup(data):
    return fit(optimizer=keras.optimizers.Adam(), shuffle=False)  # learning_rate=1e-3, epsilon=1e-7
