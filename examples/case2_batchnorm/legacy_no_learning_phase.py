"""Case 2, legacy: the learning phase is never fed, so it stays False: BatchNorm in inference mode."""

from legacy_common import legacy


def setup(data):
    return legacy(feed_learning_phase=False, with_model_updates=True)
