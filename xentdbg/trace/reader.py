"""Read a trace, refusing anything a trace writer would not produce.

Traces come from other machines and bug reports, so the reader treats them as
untrusted: before any tensor is read it walks the whole file and refuses external or
soft links, virtual datasets, external raw storage, non-numeric dtypes (object,
variable-length, strings, compound), shapes larger than :data:`MAX_TENSOR_BYTES`, a
missing or unknown format version, and tensors whose shapes contradict the recorded
parameter tables. Reading is lazy: a step's tensors are h5py datasets until used, so
comparing two traces holds one tensor pair in memory at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xentdbg.errors import UsageError
from xentdbg.records import PHASES, SideInfo, StepRecord, side_info_from_dict
from xentdbg.trace.writer import FORMAT, FORMAT_VERSION

MAX_TENSOR_BYTES = 8 << 30
MAX_ATTR_CHARS = 16 << 20
_NUMERIC_KINDS = "biuf"


class TraceError(UsageError):
    """The file is not a trace xentdbg can read (exit 2)."""


def _bad(path: Path, why: str) -> TraceError:
    return TraceError(f"{path} is not a usable xentdbg trace: {why}.",
                      hint="Record traces with `xentdbg trace ... --out FILE.h5`.")


def _json_attr(path: Path, obj: Any, key: str) -> Any:
    raw = obj.attrs.get(key)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise _bad(path, f"attribute {key!r} of {obj.name} is missing or not text")
    if len(raw) > MAX_ATTR_CHARS:
        raise _bad(path, f"attribute {key!r} of {obj.name} is {len(raw)} characters long")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise _bad(path, f"attribute {key!r} of {obj.name} is not JSON ({e})") from None


def _check_tree(path: Path, root: Any) -> None:
    """Walk every link; refuse anything that could read outside the file or is not a plain tensor."""
    import h5py

    stack = [root]
    while stack:
        group = stack.pop()
        for key in group:
            link = group.get(key, getlink=True)
            where = f"{group.name.rstrip('/')}/{key}"
            if isinstance(link, h5py.ExternalLink):
                raise _bad(path, f"{where} is an external link to {link.filename} (refused)")
            if isinstance(link, h5py.SoftLink):
                raise _bad(path, f"{where} is a soft link (refused)")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                if group.name == "/steps" and not bool(obj.attrs.get("complete", False)):
                    continue  # the writer stopped inside this step (a dataset may lack its name yet): never read
                stack.append(obj)
            elif isinstance(obj, h5py.Dataset):
                _check_dataset(path, where, obj)
            else:
                raise _bad(path, f"{where} is a {type(obj).__name__} (refused)")


def _check_dataset(path: Path, where: str, ds: Any) -> None:
    if ds.is_virtual:
        raise _bad(path, f"{where} is a virtual dataset (refused)")
    if ds.external:
        raise _bad(path, f"{where} stores its data in external files (refused)")
    dtype = ds.dtype
    if dtype.kind not in _NUMERIC_KINDS or dtype.names or dtype.subdtype:  # object/vlen/str/compound
        raise _bad(path, f"{where} has dtype {dtype} (only numeric tensors are allowed)")
    nbytes = int(np.prod(ds.shape, dtype=np.float64)) * dtype.itemsize if ds.shape is not None else 0
    if nbytes > MAX_TENSOR_BYTES:
        raise _bad(path, f"{where} declares shape {ds.shape} ({nbytes / 2**30:.0f} GiB)")
    if "name" not in ds.attrs:
        raise _bad(path, f"{where} has no 'name' attribute")


@dataclass
class Trace:
    """An open trace. ``meta`` and ``info`` as recorded; ``steps`` the complete steps, in order.

    Iterate it (or call :meth:`records`) for :class:`~xentdbg.records.StepRecord` s whose
    arrays are read lazily; ``record(step, load=True)`` reads one step into memory."""

    path: Path
    meta: dict
    info: SideInfo
    steps: list[int]
    _file: Any

    def initial(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        f = self._file
        return ([f["initial/params"][k][()] for k in sorted(f["initial/params"])],
                [f["initial/state"][k][()] for k in sorted(f["initial/state"])])

    def record(self, step: int, load: bool = False) -> StepRecord:
        group = self._file["steps"][f"{step:08d}"]
        tensors = {}
        for phase in PHASES:
            if phase in group:
                sub = group[phase]
                tensors[phase] = [(str(sub[k].attrs["name"]), sub[k][()] if load else sub[k]) for k in sorted(sub)]
        return StepRecord(step=step, tensors=tensors, flags=_json_attr(self.path, group, "flags"),
                          digests=_json_attr(self.path, group, "digests"))

    def rerun(self, step: int, kind: str, load: bool = False) -> StepRecord | None:
        """A re-run ``compare --save-traces`` recorded for flagged step ``step``: ``kind``
        ``"crossfed"`` (this side from the other side's pre-step values) or ``"float64"``
        (the float64 oracle); None when there is none."""
        group = self._file["steps"][f"{step:08d}"]
        if kind not in group:
            return None
        sub = group[kind]
        if not hasattr(sub, "keys") or any(not hasattr(sub[p], "keys") for p in sub):
            raise _bad(self.path, f"{sub.name} is not a group of phase groups")
        tensors = {phase: [(str(sub[phase][k].attrs["name"]), sub[phase][k][()] if load else sub[phase][k])
                           for k in sorted(sub[phase])] for phase in PHASES if phase in sub}
        return StepRecord(step=step, tensors=tensors)

    def verdict(self, step: int) -> dict | None:
        """The cross-feed's verdict on step ``step`` as JSON data (see ``compare --json``'s
        ``per_step[].crossfeed``), or None when the step was not flagged."""
        group = self._file["steps"][f"{step:08d}"]
        return _json_attr(self.path, group, "crossfeed") if "crossfeed" in group.attrs else None

    def records(self, load: bool = False) -> Iterator[StepRecord]:
        for step in self.steps:
            yield self.record(step, load)

    __iter__ = records

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_trace(path: str | Path) -> Trace:
    """Open and validate a trace. Raises :class:`TraceError` (exit 2) for anything unusable."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file.")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _bad(path, f"HDF5 cannot open it ({str(e).split('(')[0].strip()})") from None
    try:
        if f.attrs.get("format") != FORMAT:
            raise _bad(path, "it has no xentdbg format marker")
        version = f.attrs.get("format_version")
        if version is None:
            raise _bad(path, "it has no format version")
        if not isinstance(version, (int, np.integer)) or int(version) != FORMAT_VERSION:
            raise _bad(path, f"format version {version}; this xentdbg reads version {FORMAT_VERSION}")
        for group in ("initial/params", "initial/state", "steps"):
            if group not in f:
                raise _bad(path, f"group /{group} is missing")
        _check_tree(path, f)
        meta = _json_attr(path, f, "meta")
        try:
            info = side_info_from_dict(_json_attr(path, f, "info"))
        except (KeyError, TypeError, ValueError) as e:
            raise _bad(path, f"the side description is malformed ({e})") from None
        _check_shapes(path, f, info)
        steps = []
        for key in sorted(f["steps"]):
            group = f["steps"][key]
            if not bool(group.attrs.get("complete", False)):
                continue  # the writer stopped inside this step
            if not key.isdigit() or int(group.attrs.get("step", -1)) != int(key):
                raise _bad(path, f"step group {key} is mislabelled")
            steps.append(int(key))
        return Trace(path, meta, info, steps, f)
    except TraceError:
        f.close()
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        f.close()
        raise _bad(path, f"reading it failed ({e})") from None


def _check_shapes(path: Path, f: Any, info: SideInfo) -> None:
    """Initial tensors, gradients and weights must have the shapes of the parameter table."""
    tables = {"initial/params": info.params, "initial/state": info.state}
    for group, table in tables.items():
        keys = sorted(f[group])
        if len(keys) != len(table):
            raise _bad(path, f"/{group} holds {len(keys)} tensors, the table lists {len(table)}")
        for key, spec in zip(keys, table):
            if tuple(f[group][key].shape) != spec.shape:
                raise _bad(path, f"/{group}/{key} has shape {f[group][key].shape}, the table says {spec.shape}")
    for key in f["steps"]:
        if not bool(f["steps"][key].attrs.get("complete", False)):
            continue  # cut short: never read (and not walked by _check_tree)
        for phase, table in (("gradients", info.params), ("weights", info.params), ("state", info.state)):
            if phase in f["steps"][key]:
                group = f["steps"][key][phase]
                for k, spec in zip(sorted(group), table):
                    if tuple(group[k].shape) != spec.shape:
                        raise _bad(path, f"/steps/{key}/{phase}/{k} has shape {group[k].shape}, "
                                         f"the parameter table says {spec.shape}")
