"""Read a trace, refusing anything a trace writer would not produce.

Traces come from other machines and bug reports, so the reader treats them as
untrusted: before any tensor is read, :func:`xentdbg.trace.schema.check` walks the whole
file against the declared layout (links, attributes, JSON documents, every dataset's
declared shape, dtype, storage and role, the byte budgets; see docs/trace-format.md).
Reading is lazy: a step's tensors are :class:`LazyTensor` s until used, so comparing two
traces holds one tensor pair in memory at a time, and an error HDF5 raises only when the
data is read (a corrupt compressed chunk) still ends as :class:`TraceError` (exit 2).
:func:`load_trace` and the :class:`Trace` methods raise no other error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xentdbg.paths import describe_not_file
from xentdbg.records import SideInfo, StepRecord
from xentdbg.trace.ranks import RankMeta, rank_of
from xentdbg.trace.schema import H5_ERRORS, MAX_ATTR_CHARS, MAX_TENSOR_BYTES, Layout, TensorRef, TraceError, bad, check
from xentdbg.trace.writer import RERUNS

__all__ = ["MAX_ATTR_CHARS", "MAX_TENSOR_BYTES", "LazyTensor", "Trace", "TraceError", "load_trace"]


class LazyTensor:
    """A checked tensor of an open trace, read when used: ``np.asarray(t)`` reads it all,
    ``t[index]`` a part (e.g. a block of rows for a statistic). ``shape``, ``dtype``,
    ``ndim``, ``size`` and ``nbytes`` are the checked declaration and read nothing. A read
    HDF5 fails on raises :class:`TraceError`."""

    __slots__ = ("_file", "_path", "ref")

    def __init__(self, file: Any, path: Path, ref: TensorRef):
        self._file, self._path, self.ref = file, path, ref

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ref.shape

    @property
    def dtype(self) -> np.dtype:
        return self.ref.dtype

    @property
    def ndim(self) -> int:
        return len(self.ref.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.ref.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.ref.dtype.itemsize

    def __len__(self) -> int:
        if not self.ref.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.ref.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        try:
            out = np.asarray(self._file[self.ref.path][index])
        except H5_ERRORS as e:
            raise bad(self._path, f"reading {self.ref.path} failed ({str(e).split('(')[0].strip() or e})") from None
        return out

    def read(self) -> np.ndarray:
        """The whole tensor, with its declared shape and dtype."""
        out = self[()]
        if out.shape != self.ref.shape or out.dtype != self.ref.dtype:  # what was checked is what is read
            raise bad(self._path, f"{self.ref.path} read back as {out.dtype} {out.shape}, "
                                  f"declared {self.ref.dtype} {self.ref.shape}")
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<LazyTensor {self.ref.path} {self.ref.dtype} {self.ref.shape}>"


@dataclass
class Trace:
    """An open trace. ``meta`` and ``info`` as recorded; ``steps`` the complete steps, in order.

    Iterate it (or call :meth:`records`) for :class:`~xentdbg.records.StepRecord` s whose
    arrays are :class:`LazyTensor` s; ``record(step, load=True)`` reads one step into memory.
    Every method raises :class:`TraceError` and nothing else."""

    path: Path
    meta: dict
    info: SideInfo
    steps: list[int]
    _file: Any
    _layout: Layout

    @property
    def rank(self) -> RankMeta | None:
        """Which replica of a data-parallel run this rank file holds (None: not a rank file;
        :mod:`xentdbg.trace.ranks`). Checked with the rest of the file when it was opened."""
        return rank_of(self.meta)

    def _tensors(self, refs: list[TensorRef], load: bool) -> list[tuple[str, Any]]:
        return [(ref.name, self._tensor(ref, load)) for ref in refs]

    def _tensor(self, ref: TensorRef, load: bool) -> Any:
        tensor = LazyTensor(self._file, self.path, ref)
        return tensor.read() if load else tensor

    def _step(self, step: int) -> Any:
        entry = self._layout.steps.get(step) if isinstance(step, (int, np.integer)) else None
        if entry is None:
            held = f"{self.steps[0]}..{self.steps[-1]}" if self.steps else "no complete step"
            raise TraceError(f"{self.path}: step {step} is not in the trace (it holds {held}).")
        return entry

    def initial(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The initial parameters and state, read, in table order."""
        params, state = self._layout.initial
        return [self._tensor(r, True) for r in params], [self._tensor(r, True) for r in state]

    def record(self, step: int, load: bool = False) -> StepRecord:
        entry = self._step(step)
        tensors = {phase: self._tensors(refs, load) for phase, refs in entry.tensors.items()}
        return StepRecord(step=int(step), tensors=tensors, flags=dict(entry.flags), digests=dict(entry.digests))

    def loss(self, step: int) -> float:
        """Step ``step``'s loss (checked to be one value)."""
        (ref,) = self._step(step).tensors["loss"]
        return float(self._tensor(ref, True).reshape(()))

    def rerun(self, step: int, kind: str, load: bool = False) -> StepRecord | None:
        """A re-run ``compare --save-traces`` recorded for flagged step ``step``: ``kind``
        ``"crossfed"`` (this side from the other side's pre-step values) or ``"float64"``
        (the float64 oracle); None when there is none (or it was cut short)."""
        if kind not in RERUNS:
            raise TraceError(f"unknown re-run kind {kind!r} (one of {', '.join(RERUNS)}).")
        phases = self._step(step).reruns.get(kind)
        if phases is None:
            return None
        return StepRecord(step=int(step), tensors={p: self._tensors(refs, load) for p, refs in phases.items()})

    def verdict(self, step: int) -> dict | None:
        """The cross-feed's verdict on step ``step`` as JSON data (see ``compare --json``'s
        ``per_step[].crossfeed``), or None when the step was not flagged."""
        return self._step(step).verdict

    def records(self, load: bool = False) -> Iterator[StepRecord]:
        for step in self.steps:
            yield self.record(step, load)

    __iter__ = records

    def close(self) -> None:
        try:
            self._file.close()
        except H5_ERRORS as e:
            raise bad(self.path, f"closing it failed ({e})") from None

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_trace(path: str | Path) -> Trace:
    """Open and check a trace (:func:`xentdbg.trace.schema.check`, the whole file, before
    any tensor is read). Raises :class:`TraceError` (exit 2) for anything unusable."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: {describe_not_file(path)}.")
    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as e:
        raise bad(path, f"HDF5 cannot open it ({str(e).split('(')[0].strip()})") from None
    try:
        layout = check(path, f)
    except BaseException:
        try:
            f.close()
        except H5_ERRORS:
            pass
        raise
    return Trace(path, layout.meta, layout.info, list(layout.steps), f, layout)

