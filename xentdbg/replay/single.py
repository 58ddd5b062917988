"""Run one setup in the current process, with or without capture.

Used to check that capture is neutral (a captured run ends bitwise where the plain
run ends), by benchmarks to time the plain training, and by scripts that want the
records of one side without a second one. Frameworks are imported here, so call it
in a process of its own (one Keras backend per process).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xentdbg.data import DataSpec, load
from xentdbg.records import CaptureMode, SideInfo, StepRecord
from xentdbg.replay.loading import SetupRef, load_function


@dataclass
class SingleRun:
    info: SideInfo
    records: list[StepRecord]
    initial_weights: list[np.ndarray]
    final_weights: list[np.ndarray]


def run_setup(setup: str, data: DataSpec, steps: int, capture: CaptureMode | None = CaptureMode.FULL,
              init_params: list[np.ndarray] | None = None) -> SingleRun:
    """Train ``setup`` for ``steps`` steps in this process, keeping every step's record
    captured as ``capture``; ``capture=None`` is the plain training, nothing captured."""
    from xentdbg.adapters import make_adapter

    info = load(data)
    adapter = make_adapter(load_function(SetupRef.parse(setup))(info), info)
    if init_params is not None:
        adapter.set_initial_values(init_params, None)
    initial, _ = adapter.initial_values()
    records: list[StepRecord] = []
    if capture is None:
        adapter.train(steps, None)
    else:
        adapter.train(steps, records.append, capture=capture)
    return SingleRun(adapter.describe(), records, initial, adapter.final_weights())
