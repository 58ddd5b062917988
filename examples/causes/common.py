"""Shared pieces of the cause-by-cause examples: one small network, one loop.

Network: Dense(64, relu) - Dense(10, softmax), Keras seed 0, categorical cross-entropy.
Every pair runs with the same data options (see README.md):

    --task digits --pixels unit --subset 300 --batch-size 100 --steps 3

``fit`` builds a ``model.fit`` side; each loop file writes its own ``tf.GradientTape``
step in full, as a user would.
"""

import keras

import xentdbg

LEARNING_RATE = 0.1
L2 = 1e-2  # large enough that 2*L2*W exceeds the default tolerance on the kernel's gradient


def build(l2=None, front=(), seed=0):
    """The model, seeded. ``l2`` puts an L2 penalty on the hidden layer's kernel; ``front``:
    layers without weights put before it."""
    keras.utils.set_random_seed(seed)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    return keras.Sequential([
        keras.Input((784,)),
        *front,
        keras.layers.Dense(64, activation="relu", kernel_regularizer=regularizer),
        keras.layers.Dense(10, activation="softmax"),
    ])


def sgd():
    return keras.optimizers.SGD(learning_rate=LEARNING_RATE)


def fit(optimizer=None, l2=None, front=(), loss="categorical_crossentropy", seed=0, **fit_kwargs):
    """``model.compile(optimizer, loss)`` then ``model.fit(**fit_kwargs)``."""
    model = build(l2, front, seed)
    model.compile(optimizer=sgd() if optimizer is None else optimizer, loss=loss)
    return xentdbg.KerasFit(model, **fit_kwargs)

