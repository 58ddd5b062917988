"""Write a trace: one HDF5 file, flushed after every step so a killed writer leaves a readable file.

Layout (docs/trace-format.md)::

    /                 attrs: format="xentdbg-trace", format_version, meta (JSON), info (JSON)
    /initial/params/NNNNNN, /initial/state/NNNNNN     datasets, attr "name"
    /steps/SSSSSSSS   attrs: step, flags (JSON), digests (JSON), complete=True (written last)
    /steps/SSSSSSSS/PHASE/NNNNNN                      datasets, attr "name"
    /steps/SSSSSSSS/RERUN/PHASE/NNNNNN   a flagged step re-run (compare only): RERUN is
                      "crossfed" (this side from the other side's pre-step values) or
                      "float64" (the float64 oracle), attr complete=True (written last);
                      the step's attr "crossfeed" (JSON) holds the verdict

Tensor names go in attributes, never in paths (Keras names contain "/"). Only plain
numeric and bool dtypes are written; nothing is pickled.

Crash safety: a step or re-run group is marked ``complete`` last, and readers skip a
group without the mark unread. Each write (the header, a step, a re-run, a verdict,
closing) also holds back SIGINT and SIGTERM until it is done and flushed
(:func:`signals_held`), so Ctrl-C ends a run between steps, not inside one.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from xentdbg.records import PHASES, SideInfo, StepRecord, side_info_to_dict

FORMAT = "xentdbg-trace"
FORMAT_VERSION = 1
RERUNS = ("crossfed", "float64")
"""Re-runs a compare may add to a flagged step (readers of version 1 without them ignore them)."""


HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends.

    In the main thread, the Python handlers are swapped for one that records the signal,
    and the signal is raised again once the old handlers are back (KeyboardInterrupt then
    comes from the end of the block). Blocking the signal with ``pthread_sigmask`` alone
    would not do there: the kernel hands a process-directed signal to any thread that does
    not block it (a progress bar's refresh thread), and Python's handler then interrupts
    the main thread all the same. In another thread (Python handlers cannot be set there)
    the signals are blocked for that thread with ``pthread_sigmask``, where available."""
    if threading.current_thread() is not threading.main_thread():
        if not hasattr(signal, "pthread_sigmask"):
            yield
            return
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return
    pending: list[int] = []
    old: dict[int, Any] = {}
    try:
        for sig in HELD:
            if signal.getsignal(sig) is not None:  # None: a handler set outside Python, which cannot be restored
                old[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        yield
    finally:
        for held, handler in old.items():
            signal.signal(held, handler)
        for arrived in dict.fromkeys(pending):
            signal.raise_signal(arrived)


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
        with signals_held():
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
        """Write one step, mark it complete, flush (signals held: :func:`signals_held`)."""
        with signals_held():
            group = self.steps.create_group(step_key(record.step))
            group.attrs["step"] = record.step
            group.attrs["flags"] = json.dumps(record.flags)
            group.attrs["digests"] = json.dumps(record.digests)
            self._phases(group, record.tensors)
            group.attrs["complete"] = True
            self.file.flush()

    def _phases(self, group, tensors: dict[str, list[tuple[str, np.ndarray]]]) -> None:
        for phase in PHASES:
            if phase in self.phases and phase in tensors:
                self._tensors(group.create_group(phase), tensors[phase])

    def write_rerun(self, step: int, kind: str, tensors: dict[str, list[tuple[str, np.ndarray]]]) -> None:
        """Add a re-run of written step ``step`` (``kind`` in :data:`RERUNS`) under it, mark
        it complete (readers skip a re-run without the mark), flush; signals held."""
        if kind not in RERUNS:
            raise ValueError(f"unknown re-run kind {kind!r}")
        with signals_held():
            group = self.steps[step_key(step)].create_group(kind)
            self._phases(group, tensors)
            group.attrs["complete"] = True
            self.file.flush()

    def write_verdict(self, step: int, verdict: dict) -> None:
        """The cross-feed's verdict on written step ``step`` (JSON), flush; signals held."""
        with signals_held():
            self.steps[step_key(step)].attrs["crossfeed"] = json.dumps(verdict)
            self.file.flush()

    def close(self) -> None:
        with signals_held():
            if self.file.id.valid:
                self.file.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
