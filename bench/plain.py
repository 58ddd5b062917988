"""Train one setup without xentdbg's capture, through xentdbg's own adapters: the same
code paths (``model.fit``, the JAX loop, the distributed loop), in a process of its own.
The data options the setup function declares (``@xentdbg.declare``: task, labels,
pixels, layout) apply, as they do for ``compare``; steps, subset and batch size come
from the command line.

Usage: python bench/plain.py SETUP STEPS SUBSET BATCH_SIZE
"""

import sys

from xentdbg.data import DataSpec
from xentdbg.replay.loading import SetupRef, declared_data
from xentdbg.replay.single import run_setup


def spec(setup: str, subset: int, batch: int) -> DataSpec:
    """The data ``compare`` would give ``setup``: its declared options, this subset and batch."""
    declared = declared_data(SetupRef.parse(setup), "setup")
    return DataSpec(subset=subset, batch_size=batch,
                    **{k: declared[k] for k in ("task", "labels", "pixels", "layout") if k in declared})


if __name__ == "__main__":
    setup, steps, subset, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    run_setup(setup, spec(setup, subset, batch), steps, capture=None)
