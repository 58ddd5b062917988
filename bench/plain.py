"""Train one setup without xentdbg's capture, as a user's own script would: the same
code paths (``model.fit``, the JAX loop), in a process of its own.

Usage: python bench/plain.py SETUP STEPS SUBSET BATCH_SIZE
"""

import sys

from xentdbg.data import DataSpec
from xentdbg.replay.single import run_setup

setup, steps, subset, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
run_setup(setup, DataSpec(subset=subset, batch_size=batch), steps, capture=None)
