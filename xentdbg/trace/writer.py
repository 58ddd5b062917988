"""Write a trace: one HDF5 file, flushed after every step so a killed writer leaves a readable file.

Layout (docs/trace-format.md)::

    /                 attrs: format="xentdbg-trace", format_version, meta (JSON), info (JSON)
    /initial/params/NNNNNN, /initial/state/NNNNNN     datasets, attr "name"
    /steps/SSSSSSSS   attrs: step, flags (JSON), digests (JSON), complete=True (written last)
    /steps/SSSSSSSS/PHASE/NNNNNN                      datasets, attr "name"
    /steps/SSSSSSSS/RERUN/PHASE/NNNNNN   a flagged step re-run (compare only): RERUN is
                      "crossfed" (this side from the other side's pre-step values) or
                      "float64" (the float64 oracle); the step's attr "crossfeed" (JSON)
                      holds the verdict

Tensor names go in attributes, never in paths (Keras names contain "/"). Only plain
numeric and bool dtypes are written; nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xentdbg.records import PHASES, SideInfo, StepRecord, side_info_to_dict

FORMAT = "xentdbg-trace"
FORMAT_VERSION = 1
RERUNS = ("crossfed", "float64")
"""Re-runs a compare may add to a flagged step (readers of version 1 without them ignore them)."""


def step_key(step: int) -> str:
    return f"{step:08d}"


def tensor_key(index: int) -> str:
    return f"{index:06d}"


class TraceWriter:
    """Append steps to a new trace file. Use as a context manager.

    Args:
        path: file to create (overwritten).
        meta: JSON-serialisable metadata (versions, data spec, setup, command line).
        info: the side's description (kind, framework, parameter and state tables).
        initial: initial parameters and state, in table order.
        phases: phases to keep (default: all). The loss is always kept.
        compression: ``None``, ``"gzip"`` or ``"lzf"``.
    """

    def __init__(self, path: str | Path, meta: dict, info: SideInfo,
                 initial: tuple[list[np.ndarray], list[np.ndarray]],
                 phases: tuple[str, ...] = PHASES, compression: str | None = None):
        import h5py

        self.phases = set(phases) | {"loss"}
        self.compression = compression
        self.file = h5py.File(path, "w")
        self.file.attrs["format"] = FORMAT
        self.file.attrs["format_version"] = FORMAT_VERSION
        self.file.attrs["meta"] = json.dumps(meta)
        self.file.attrs["info"] = json.dumps(side_info_to_dict(info))
        params, state = initial
        self._tensors(self.file.create_group("initial/params"), list(zip((p.name for p in info.params), params)))
        self._tensors(self.file.create_group("initial/state"), list(zip((s.name for s in info.state), state)))
        self.steps = self.file.create_group("steps")
        self.file.flush()

    def _tensors(self, group, named: list[tuple[str, np.ndarray]]) -> None:
        for i, (name, array) in enumerate(named):
            array = np.asarray(array)
            kwargs = {"compression": self.compression} if self.compression and array.ndim else {}
            ds = group.create_dataset(tensor_key(i), data=array, **kwargs)
            ds.attrs["name"] = name

    def write(self, record: StepRecord) -> None:
        """Write one step, mark it complete, flush."""
        group = self.steps.create_group(step_key(record.step))
        group.attrs["step"] = record.step
        group.attrs["flags"] = json.dumps(record.flags)
        group.attrs["digests"] = json.dumps(record.digests)
        for phase in PHASES:
            if phase in self.phases and phase in record.tensors:
                self._tensors(group.create_group(phase), record.tensors[phase])
        group.attrs["complete"] = True
        self.file.flush()

    def write_rerun(self, step: int, kind: str, tensors: dict[str, list[tuple[str, np.ndarray]]]) -> None:
        """Add a re-run of written step ``step`` (``kind`` in :data:`RERUNS`) under it, flush."""
        if kind not in RERUNS:
            raise ValueError(f"unknown re-run kind {kind!r}")
        group = self.steps[step_key(step)].create_group(kind)
        for phase in PHASES:
            if phase in self.phases and phase in tensors:
                self._tensors(group.create_group(phase), tensors[phase])
        self.file.flush()

    def write_verdict(self, step: int, verdict: dict) -> None:
        """The cross-feed's verdict on written step ``step`` (JSON), flush."""
        self.steps[step_key(step)].attrs["crossfeed"] = json.dumps(verdict)
        self.file.flush()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
