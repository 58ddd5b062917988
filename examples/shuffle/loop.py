"""The reference: a GradientTape loop over the batches in order (see common.py)."""

from common import loop


def setup(data):
    return loop()
