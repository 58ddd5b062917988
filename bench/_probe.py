"""Time one setup's training with and without capture, in this process, and keep a few records.

Usage: python bench/_probe.py SETUP STEPS SUBSET BATCH TRACE_OUT
Prints JSON: plain and captured training seconds (imports and model building excluded).
"""

import json
import sys
import time

from xentdbg.adapters import make_adapter
from xentdbg.data import DataSpec, load
from xentdbg.replay.loading import SetupRef, load_function
from xentdbg.trace import TraceWriter

setup, steps, subset, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
data = load(DataSpec(subset=subset, batch_size=batch))
fn = load_function(SetupRef.parse(setup))
KEEP = 20


def timed(capture: bool):
    adapter = make_adapter(fn(data), data)
    adapter.train(1, None)  # compile/trace outside the timing, as the first step of any run
    adapter = make_adapter(fn(data), data)
    records = []
    start = time.perf_counter()
    adapter.train(steps, (lambda r: records.append(r) if len(records) < KEEP else None) if capture else None)
    adapter.final_weights()  # waits for the last step: JAX dispatches asynchronously
    return time.perf_counter() - start, adapter, records


plain_s, _, _ = timed(False)
captured_s, adapter, records = timed(True)
with TraceWriter(out, {"setup": setup}, adapter.describe(), adapter.initial_values()) as writer:
    for r in records:
        writer.write(r)
record_bytes = sum(a.nbytes for a in records[0].to_wire()[1])
print(json.dumps({"plain_s": plain_s, "captured_s": captured_s, "record_bytes": record_bytes}))
