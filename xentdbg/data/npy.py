"""Read untrusted ``.npy`` and ``.npz`` files: every array's header is checked before the
array is read.

``numpy.load`` allocates what a header declares before it reads a byte of data, so a
file of a few hundred bytes declaring shape ``(10**12,)`` ends in a ``MemoryError``.
Here the header (shape, dtype) is read first, with
:func:`numpy.lib.format.read_magic` and ``read_array_header_1_0``/``2_0``, from the
file or from the zip member, and an array over ``max_bytes``, of an object dtype (a
pickle), or larger than the data actually stored is refused with :class:`ArrayFileError`
(a ``ValueError``) before anything is allocated. Pickles are never loaded
(``allow_pickle=False`` always).
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

MAX_BYTES = 1 << 30
"""The largest array read by default: 1 GiB (Keras' mnist.npz holds 47 MB of images)."""


class ArrayFileError(ValueError):
    """A ``.npy``/``.npz`` file or member that is not read: what is wrong, without the path."""


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    stored: int | None = None  # bytes of data behind the header, where known

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow

    def describe(self) -> str:
        return f"shape {self.shape} of {self.dtype}"


def _header(f: IO[bytes], size: int | None) -> ArrayHeader:
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ArrayFileError(f".npy format version {version[0]}.{version[1]} is not read "
                                 "(numpy writes 1.0 or 2.0 for numeric arrays)")
    except ArrayFileError:
        raise
    except (ValueError, EOFError, OSError) as e:  # no magic string, a malformed or oversized header
        raise ArrayFileError(f"not a .npy array ({e})") from None
    stored = None if size is None else size - f.tell()
    return ArrayHeader(tuple(int(n) for n in shape), np.dtype(dtype), stored)


def _checked(header: ArrayHeader, max_bytes: int) -> ArrayHeader:
    if any(n < 0 for n in header.shape):
        raise ArrayFileError(f"{header.describe()}: a negative dimension")
    if header.dtype.hasobject:
        raise ArrayFileError(f"cannot read it without pickle: {header.describe()} is an object array "
                             "(xentdbg never unpickles)")
    if header.nbytes > max_bytes:
        raise ArrayFileError(f"{header.describe()} is {_size(header.nbytes)}, more than the "
                             f"{_size(max_bytes)} xentdbg reads")
    if header.stored is not None and header.nbytes > header.stored:
        raise ArrayFileError(f"{header.describe()} needs {header.nbytes} bytes but the file holds "
                             f"{header.stored}: it is truncated")
    return header


def npz_keys(path: str) -> list[str]:
    """The keys ``numpy.load`` gives the members of the ``.npz`` archive ``path`` (the
    member names without ``.npy``). Raises :class:`zipfile.BadZipFile` or :class:`OSError`."""
    with zipfile.ZipFile(path) as z:
        return [_key(name) for name in z.namelist()]


def npz_header(path: str, key: str) -> ArrayHeader:
    """The header of the member ``key`` of the ``.npz`` archive ``path``, read from the
    zip without reading the array. Raises :class:`ArrayFileError` when it is not a .npy
    array, :class:`KeyError` when there is no such member."""
    with zipfile.ZipFile(path) as z:
        info = next((i for i in z.infolist() if _key(i.filename) == key), None)
        if info is None:
            raise KeyError(key)
        with z.open(info) as f:
            return _header(f, info.file_size)


def read_npz(path: str, keys: list[str], max_bytes: int = MAX_BYTES) -> list[np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` file ``path``, each header checked first."""
    for key in keys:
        try:
            _checked(npz_header(path, key), max_bytes)
        except ArrayFileError as e:
            raise ArrayFileError(f"{key}: {e}") from None
    with np.load(path, allow_pickle=False) as f:
        return [f[key] for key in keys]


def _key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


def read_npy(path: str, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The array in the ``.npy`` file ``path``, its header checked first."""
    with open(path, "rb") as f:
        _checked(_header(f, os.fstat(f.fileno()).st_size), max_bytes)
    return np.load(path, allow_pickle=False)


def _size(n: int) -> str:
    if n.bit_length() > 70:
        return f"about 2^{n.bit_length() - 1} bytes"
    value, unit = float(n), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    return f"{n} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
