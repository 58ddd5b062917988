"""Case 2, legacy: learning phase fed True, but model.updates left out: loss and gradients
match fit, BatchNorm's moving statistics never move."""

from legacy_common import legacy


def setup(data):
    return legacy(feed_learning_phase=True, with_model_updates=False)
