"""Cause 6, different data: ``model.fit`` left at its default ``shuffle=True``.

Bug: the original script calls ``model.fit(x, y, batch_size=100, epochs=...)`` and
never thinks about order; ``fit`` shuffles the whole training set every epoch, so its
first batch is not ``x[:100]``. The port (loop.py) walks the batches in order. Same
model, same weights, same loss, yet the two never train on the same batch.

Fix: ``model.fit(..., shuffle=False)`` when comparing (fit.py), or shuffle the port's
batches with the same permutation. xentdbg reports it in the ``inputs`` phase of step 0,
before any layer runs.
"""

from common import fit


def setup(data):
    return fit()  # shuffle=True is fit's default
