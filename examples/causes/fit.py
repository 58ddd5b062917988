"""Reference side: ``model.fit`` with ``shuffle=False`` (batches in stored order), SGD(0.1).

Side A of the clean pair (vs loop.py) and of causes 6b (loop_rescale.py) and 7
(loop_sum.py)."""

from common import fit


def setup(data):
    return fit(shuffle=False)
