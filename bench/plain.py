"""Train one setup without xentdbg's capture, as a user's own script would: the same
code paths (``model.fit``, the JAX loop, the distributed loop), in a process of its own.
The data options the setup function declares (``@xentdbg.declare``: task, labels,
pixels, layout) apply, as they do for ``compare``; steps, subset and batch size come
from the command line.

Usage: python bench/plain.py SETUP STEPS SUBSET BATCH_SIZE
"""

import sys

from xentdbg.data import DataSpec
from xentdbg.replay.loading import SetupRef, load_function
from xentdbg.replay.single import run_setup

setup, steps, subset, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
declared = getattr(load_function(SetupRef.parse(setup)), "__xentdbg_data__", {})
options = {k: declared[k] for k in ("task", "labels", "pixels", "layout") if k in declared}
run_setup(setup, DataSpec(subset=subset, batch_size=batch, **options), steps, capture=None)
