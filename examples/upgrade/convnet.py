"""Convnets with BatchNormalization after a convolution, written with tf.keras: Keras 2
runs BatchNormalization on 4-D inputs with TensorFlow's fused kernel, Keras 3 with
separate moments and normalization ops."""

import tensorflow as tf

import xentdbg


def _compiled(layers):
    model = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), *layers,
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(10, activation="softmax")])
    model.compile(tf.keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    return model


@xentdbg.declare(task="digits", pixels="unit", batch_size=64, layout="28x28x1")
def setup(data):
    """BatchNormalization on 26x26 maps: n = 64 * 26 * 26 values per channel and step."""
    tf.keras.utils.set_random_seed(0)
    return xentdbg.KerasFit(_compiled([tf.keras.layers.Conv2D(8, 3), tf.keras.layers.BatchNormalization(),
                                       tf.keras.layers.ReLU(), tf.keras.layers.MaxPooling2D()]), shuffle=False)


@xentdbg.declare(task="digits", pixels="raw", batch_size=16, layout="28x28x1")
def small_maps(data):
    """BatchNormalization on 3x3 maps after three convolutions, pixels 0-255: n = 16 * 3 * 3."""
    tf.keras.utils.set_random_seed(0)
    return xentdbg.KerasFit(_compiled([
        tf.keras.layers.Conv2D(8, 3, activation="relu"), tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(16, 3, activation="relu"), tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(16, 3), tf.keras.layers.BatchNormalization(), tf.keras.layers.ReLU()]), shuffle=False)
