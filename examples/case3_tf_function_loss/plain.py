"""Case 3: the weighted loss called as a plain Python function inside the tf.function step."""

from common import build, weighted_xent


def setup(data):
    return build(weighted_xent)
