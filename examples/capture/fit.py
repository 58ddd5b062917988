"""``model.fit`` without validation: the reference side."""

from common import fit


def setup(data):
    return fit()
