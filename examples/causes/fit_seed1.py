"""Cause 12, different initial weights: the same ``fit`` seeded with 1 instead of 0.

Run with ``--init own`` (each side keeps the weights its setup built; by default B starts
from A's). Every parameter then differs before step 0, with the same spread (the same
Glorot-uniform initializer, other random numbers), which explains every difference after.

Fix: start both sides from the same weights (seed both alike, or load one checkpoint).
"""

from common import fit


def setup(data):
    return fit(seed=1, shuffle=False)
