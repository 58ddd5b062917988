"""Run a setup plain and captured in this process; print whether final weights are bitwise equal.

Usage: python neutral_check.py SETUP SUBSET BATCH STEPS TASK PIXELS [full|fingerprint]
"""

import json
import sys

import numpy as np

from xentdbg.data import DataSpec
from xentdbg.records import CaptureMode
from xentdbg.replay.single import run_setup

setup, subset, batch, steps, task, pixels = sys.argv[1:7]
mode = CaptureMode(sys.argv[7]) if len(sys.argv) > 7 else CaptureMode.FULL
spec = DataSpec(subset=int(subset), batch_size=int(batch), task=task, pixels=pixels)
plain = run_setup(setup, spec, int(steps), capture=None)
# Same initial weights: a second graph-mode model in one process draws different ones.
captured = run_setup(setup, spec, int(steps), capture=mode, init_params=plain.initial_weights)
equal = [a.tobytes() == b.tobytes() for a, b in zip(plain.final_weights, captured.final_weights, strict=True)]
max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(plain.final_weights, captured.final_weights))
last_weights_equal = all(r.tobytes() == w.tobytes() for (_, r), w in
                         zip(captured.records[-1].tensors["weights"], captured.final_weights, strict=True))
print(json.dumps({"equal": equal, "records": len(captured.records),
                  "max_diff": max_diff, "last_weights_equal": last_weights_equal}))
