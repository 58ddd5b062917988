"""Messages between the coordinator and its workers: a JSON header plus raw arrays.

Frame layout (all lengths little-endian uint64)::

    [header length][header JSON][array 0 bytes][array 1 bytes]...

The header lists each array's dtype and shape under ``"arrays"``; the payload is
the arrays' C-contiguous bytes. Nothing is pickled, so a worker can only send data.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

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


def send(fd: int, header: dict[str, Any], arrays: list[np.ndarray] | None = None) -> None:
    """Write one message: ``header`` (JSON-serialisable) and ``arrays`` in order."""
    arrays = [np.asarray(a, order="C") for a in (arrays or [])]  # ascontiguousarray would make 0-d arrays 1-d
    header = dict(header, arrays=[[a.dtype.str, list(a.shape)] for a in arrays])
    blob = json.dumps(header).encode()
    _write_all(fd, _LEN.pack(len(blob)) + blob)
    for a in arrays:
        if a.nbytes:
            _write_all(fd, a.data)


def recv(fd: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read one message written by :func:`send`."""
    (n,) = _LEN.unpack(_read_exact(fd, _LEN.size))
    if n > _MAX_HEADER:
        raise ValueError(f"message header of {n} bytes: the stream is corrupt")
    header = json.loads(_read_exact(fd, n))
    arrays = []
    for dtype_str, shape in header.pop("arrays"):
        dtype = np.dtype(dtype_str)
        if dtype.hasobject:
            raise ValueError("object arrays are not accepted")
        count = int(np.prod(shape, dtype=np.int64))
        buf = _read_exact(fd, count * dtype.itemsize)
        arrays.append(np.frombuffer(buf, dtype=dtype).reshape(shape))
    return header, arrays
