"""Case 3: the same loss decorated with tf.function."""

import tensorflow as tf

from common import build, weighted_xent


def setup(data):
    return build(tf.function(weighted_xent))
