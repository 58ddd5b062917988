"""Case 2: a tf.function GradientTape loop that calls model(x) without training=True.

Keras 3 resolves training=None to inference for BatchNormalization
(keras/src/layers/layer.py ~L1065): it normalizes with its moving statistics and never
updates them, while gamma and beta still train."""

from common import loop


def setup(data):
    return loop(training=None)
