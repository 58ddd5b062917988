"""The model and loops of keras_bn.py and keras_loops.py written with ``tf.keras``: Keras 2
(tf_keras) when the process sets ``TF_USE_LEGACY_KERAS=1``, else Keras 3. BatchNorm
(moving statistics, gamma), Dropout (tf_keras: legacy stateful random ops), an L2
regularizer (model.losses), Nesterov momentum; trained by fit, a compiled loop and an
eager loop."""

import tensorflow as tf
from keras_bn import build_model
from keras_loops import loop

import xentdbg


def setup(data):
    model = build_model(data, 3, tf.keras)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def sgd(data):
    """Plain SGD(0.01) and no regularizer or Dropout: ``w1 = w0 - lr * g`` exactly."""
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([tf.keras.Input(data.input_shape), tf.keras.layers.Dense(32, activation="relu"),
                                 tf.keras.layers.Dense(data.y.shape[1], activation="softmax")])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def compiled(data):
    return loop(data, compiled=True, lib=tf.keras)


def eager(data):
    """An eager step: without Dropout (tf_keras's eager random ops cannot be replayed)."""
    return loop(data, compiled=False, lib=tf.keras, dropout=0.0)


def unseeded(data):
    """fit on the Dropout model with TensorFlow's global seed cleared, as in a process that
    never seeded it: the recompute cannot draw the step's masks, and capture must refuse."""
    model = build_model(data, 3, tf.keras)
    tf.random.set_seed(None)  # build_model seeded; the fit's random ops then draw unseeded
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def eager_dropout(data):
    """An eager step over the Dropout model: full capture must refuse it."""
    return loop(data, compiled=False, lib=tf.keras)
