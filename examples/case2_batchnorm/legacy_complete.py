"""Case 2, legacy done right: learning phase fed True and model.updates run: matches fit."""

from legacy_common import legacy


def setup(data):
    return legacy(feed_learning_phase=True, with_model_updates=True)
