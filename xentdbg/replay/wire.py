"""Messages between the coordinator and its workers: a JSON header plus raw arrays.

Frame layout (all lengths little-endian uint64)::

    [header length][header JSON][array 0 bytes][array 1 bytes]...

The header lists each array's dtype and shape under ``"arrays"``; the payload is
the arrays' C-contiguous bytes. Nothing is pickled, so a worker can only send data.
With a shared-memory ring (:mod:`xentdbg.replay.ring`) the payload is in the ring
instead and the header's ``"shm"`` says where.

Every worker's first message is a ``hello`` (:func:`hello`) carrying
:data:`PROTOCOL_VERSION`; the coordinator reads it before anything else
(:meth:`xentdbg.replay.process.WorkerProcess.handshake`). The framing above and the
``hello`` header are the one fixed point across versions: a worker under another
interpreter (``--python-a/--python-b``) whose xentdbg speaks another protocol is
refused with a message (exit 2) before any other message is read. Nothing here depends
on a library version: headers are JSON, arrays are raw bytes described by numpy's
dtype strings (``"<f4"``), which numpy has kept stable.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from xentdbg.replay.ring import RingReader, RingWriter

PROTOCOL_VERSION = 1
"""The coordinator-worker protocol this xentdbg speaks: the framing here and the messages
of :mod:`xentdbg.replay.worker`. Raise it with any change to either."""

_LEN = struct.Struct("<Q")
_MAX_HEADER = 64 << 20


class ChannelClosed(EOFError):
    """The other end closed its pipe (it exited or was killed)."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise ChannelClosed(f"pipe closed after {got} of {n} bytes")
        got += k
    return buf


def send(fd: int, header: dict[str, Any], arrays: list[np.ndarray] | None = None,
         ring: RingWriter | None = None) -> None:
    """Write one message: ``header`` (JSON-serialisable) and ``arrays`` in order, the
    arrays into ``ring`` when one is given."""
    arrays = [np.asarray(a, order="C") for a in (arrays or [])]  # ascontiguousarray would make 0-d arrays 1-d
    header = dict(header, arrays=[[a.dtype.str, list(a.shape)] for a in arrays])
    if ring is not None and arrays:
        header["shm"] = ring.put(arrays)
    blob = json.dumps(header).encode()
    _write_all(fd, _LEN.pack(len(blob)) + blob)
    if "shm" not in header:
        for a in arrays:
            if a.nbytes:
                _write_all(fd, a.data)


def hello() -> dict[str, Any]:
    """A worker's first message: the protocol it speaks, and which xentdbg and Python it
    runs (for the message when they do not match the coordinator's)."""
    import platform
    import sys

    from xentdbg.version import __version__

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the xentdbg folder
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "xentdbg": __version__, "package": package,
            "python": platform.python_version(), "executable": sys.executable}


def recv(fd: int, ring: RingReader | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read one message written by :func:`send`. Arrays read from ``ring`` are read-only
    views into a slot the worker reuses :data:`~xentdbg.replay.ring.SLOTS` records later
    (:mod:`xentdbg.replay.ring` says when that is safe)."""
    (n,) = _LEN.unpack(_read_exact(fd, _LEN.size))
    if n > _MAX_HEADER:
        raise ValueError(f"message header of {n} bytes: the stream is corrupt")
    header = json.loads(_read_exact(fd, n))
    specs = []
    for dtype_str, shape in header.pop("arrays"):
        dtype = np.dtype(dtype_str)
        if dtype.hasobject:
            raise ValueError("object arrays are not accepted")
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"negative array shape {shape}: the stream is corrupt")
        specs.append((dtype, shape))
    shm = header.pop("shm", None)
    if shm is not None:
        if ring is None:
            raise ValueError("a shared-memory record on a channel without a ring")
        return header, ring.arrays(shm, specs)
    arrays = []
    for dtype, shape in specs:
        count = int(np.prod(shape, dtype=np.int64))
        buf = _read_exact(fd, count * dtype.itemsize)
        arrays.append(np.frombuffer(buf, dtype=dtype).reshape(shape))
    return header, arrays
