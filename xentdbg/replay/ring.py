"""Step records through shared memory: a ring of slots in a file both processes map.

A full step record is megabytes (the case-1 model: 6.6 MiB per side). Through a pipe it
is copied twice by the kernel and once more into a fresh buffer; here the worker copies
each array once into a slot of a ``memfd`` (an anonymous in-memory file, Linux) that the
coordinator maps read-only and reads in place. The message header still goes through the
pipe (:mod:`xentdbg.replay.wire`) and says where the arrays are: ``{"offset", "size"}``.

Slot reuse relies on the lockstep protocol (:mod:`xentdbg.replay.worker`): the worker
writes record ``k`` only after the coordinator acknowledged record ``k - 1``, so the
coordinator holds at most records ``k - 1`` and ``k - 2`` (the step it compares and the one
before, for the diagnosis) while ``k`` is written. Three slots keep those intact. A record
that outgrows its slot starts a new, larger ring after the old one in the file, so views
of earlier records never change. The coordinator must copy a record it keeps longer
(:meth:`xentdbg.records.StepRecord.owned`).
"""

from __future__ import annotations

import mmap
import os

import numpy as np

SLOTS = 3
_ALIGN = 64  # bytes: every array starts on a cache line


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def create(side: str) -> int | None:
    """A new memfd for one worker, or None where there is none (not Linux): the records
    then travel through the pipe."""
    if not hasattr(os, "memfd_create"):
        return None
    try:
        return os.memfd_create(f"xentdbg-{side}", os.MFD_CLOEXEC)
    except OSError:
        return None


class RingWriter:
    """Worker side: copies a record's arrays into the next slot."""

    def __init__(self, fd: int):
        self.fd = fd
        self.size = 0  # bytes of the file
        self.base = 0  # where the current ring starts
        self.slot = 0  # bytes per slot
        self.count = 0  # records written
        self._map: mmap.mmap | None = None

    def put(self, arrays: list[np.ndarray]) -> dict:
        """Write ``arrays`` into the next slot; returns the header's ``shm`` entry."""
        need = sum(_aligned(a.nbytes) for a in arrays)
        if need > self.slot:
            self._grow(need)
        offset = self.base + (self.count % SLOTS) * self.slot
        self.count += 1
        pos = offset
        assert self._map is not None  # mapped above
        for a in arrays:
            if a.nbytes:
                dst = np.frombuffer(self._map, dtype=a.dtype, count=a.size, offset=pos)
                np.copyto(dst, a.reshape(-1))
                del dst  # the map cannot be closed (on growth) while a view is alive
            pos += _aligned(a.nbytes)
        return {"offset": offset, "size": self.size}

    def _grow(self, need: int) -> None:
        # At least 1.5x, so a slowly growing record does not start a ring every step.
        self.slot = max(_aligned(need), _aligned(self.slot * 3 // 2))
        self.base = self.size
        self.size = self.base + SLOTS * self.slot
        os.ftruncate(self.fd, self.size)
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self.fd, self.size)


class RingReader:
    """Coordinator side: read-only views of the arrays of a record in the ring."""

    def __init__(self, fd: int):
        self.fd = fd
        self.size = 0
        self._map: mmap.mmap | None = None

    def arrays(self, shm: dict, specs: list[tuple[np.dtype, tuple[int, ...]]]) -> list[np.ndarray]:
        try:
            size, offset = int(shm["size"]), int(shm["offset"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"bad shared-memory location {shm!r}: the stream is corrupt") from None
        if size != self.size:
            if size > os.fstat(self.fd).st_size:
                raise ValueError(f"record at {size} bytes beyond the shared file")
            # The old map stays alive as long as arrays of earlier records view it.
            self._map = mmap.mmap(self.fd, size, prot=mmap.PROT_READ)
            self.size = size
        out, pos = [], offset
        assert self._map is not None  # mapped above
        for dtype, shape in specs:
            count = int(np.prod(shape, dtype=np.int64))
            nbytes = count * dtype.itemsize
            if pos < 0 or pos + nbytes > self.size:
                raise ValueError("record arrays outside the shared file: the stream is corrupt")
            a = np.frombuffer(self._map, dtype=dtype, count=count, offset=pos) if nbytes else np.empty(0, dtype)
            out.append(a.reshape(shape))
            pos += _aligned(nbytes)
        return out

    def close(self) -> None:
        self._map = None  # unmapped once no array views it
        try:
            os.close(self.fd)
        except OSError:
            pass
