"""One tf.keras model file, run as Keras 3 and, with TF_USE_LEGACY_KERAS=1, as Keras 2
(tf_keras). Nothing in it names a Keras version: ``tf.keras`` is whichever TensorFlow
picked when it was imported."""

import tensorflow as tf

import xentdbg


def build(dropout: float):
    tf.keras.utils.set_random_seed(0)
    layers = [tf.keras.Input((784,)),
              tf.keras.layers.Dense(32, activation="relu"),
              tf.keras.layers.BatchNormalization(),
              tf.keras.layers.Dropout(dropout),
              tf.keras.layers.Dense(10, activation="softmax")]
    model = tf.keras.Sequential(layers)
    model.compile(tf.keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    return model


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    return xentdbg.KerasFit(build(dropout=0.3), shuffle=False)


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def no_dropout(data):
    """The same model with the Dropout rate at 0."""
    return xentdbg.KerasFit(build(dropout=0.0), shuffle=False)


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def shuffled(data):
    """Dropout rate 0, and fit's default shuffle=True."""
    return xentdbg.KerasFit(build(dropout=0.0))
