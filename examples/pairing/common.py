"""Shared pieces of the pairing examples: the Keras side.

Network: Dense(64, relu) - Dense(10, softmax), Keras seed 0, categorical cross-entropy,
``SGD(0.1)``, ``shuffle=False``. Every pair runs with the same data options (README.md):

    --task digits --pixels unit --subset 300 --batch-size 100 --steps 3
"""

import keras

import xentdbg

LEARNING_RATE = 0.1


def fit(layers, loss="categorical_crossentropy"):
    """``model.compile(SGD(0.1), loss)`` then ``model.fit(shuffle=False)`` on ``layers``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), *layers])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE), loss=loss)
    return xentdbg.KerasFit(model, shuffle=False)


def mlp(hidden=(64,)):
    """``Dense(h, relu)`` for each ``h`` in ``hidden``, then ``Dense(10, softmax)``."""
    return [*(keras.layers.Dense(h, activation="relu") for h in hidden), keras.layers.Dense(10, activation="softmax")]
