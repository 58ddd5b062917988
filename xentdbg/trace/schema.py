"""The trace layout, declared once, and the one walk that checks a file against it.

Traces come from other machines and bug reports, so a reader treats them as untrusted.
:data:`ROOT` describes what a writer produces (docs/trace-format.md): groups, their
attributes (text, integers, booleans, JSON documents with the shapes of :data:`META`,
:data:`INFO`, :data:`FLAGS`, :data:`DIGESTS`), and groups of tensors whose shapes each
*role* constrains (:data:`ROLES`). :func:`walk` checks a whole file against it before a
single tensor is read, and returns the :class:`Layout`: where every tensor of every
complete step is, with its name, shape and dtype. The walk

- follows hard links only, and visits each object once (by its address in the file): a
  second link to an object, a hard-link cycle among them, is refused, so the walk ends;
- reads only the attributes the layout names, after checking their dataspace and size;
- never opens a group whose ``complete`` marker is not true (a step or re-run the writer
  was cut short in), nor a name the layout does not know (ignored, never read);
- checks every dataset's declared shape, dtype, storage, filters and chunking against
  the limits below, and adds up the bytes a reader could be made to allocate.

Every failure, HDF5's own errors included, becomes :class:`TraceError` (exit 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from xentdbg.data import LAYOUT_SHAPES, Labels, Pixels, Task
from xentdbg.errors import UsageError
from xentdbg.records import PHASES, SideInfo, side_info_from_dict
from xentdbg.trace.ranks import MAX_WORLD, rank_problem
from xentdbg.trace.writer import FORMAT, FORMAT_VERSION, RERUNS

# -- limits (docs/trace-format.md, "What readers refuse") ---------------------------------

MAX_TENSOR_BYTES = 8 << 30
"""Declared bytes of one tensor (shape x itemsize)."""
MAX_EXPANSION = 1100
"""A tensor declares at most this many times the bytes it stores (+ :data:`SLACK_BYTES`):
deflate cannot expand data more than 1032-fold, LZF less, so a larger ratio means chunks
that were never written (read back as fill values) or a lying chunk index."""
SLACK_BYTES = 1 << 20
MAX_FILE_DECLARED_BYTES = 1 << 40
"""All tensors of a file together declare at most this, and at most
:data:`MAX_EXPANSION` times the file's size (+ :data:`SLACK_BYTES`)."""
MAX_CHUNK_BYTES = 64 << 20
"""One chunk (h5py's automatic chunks are at most 1 MiB), and never more than its tensor
(or 1 MiB): reading one element decompresses its whole chunk."""
MAX_SAMPLES = 1 << 24
"""Length of an ``inputs`` vector (one value per sample of the batch)."""
MAX_ATTR_BYTES = 64 << 20
MAX_ATTR_CHARS = 16 << 20
MAX_NAME_CHARS = 4096
MAX_COMMAND_CHARS = 1 << 16
MAX_TABLE = 1 << 20
"""Entries of a parameter or state table, layers, flags."""
FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
"""HDF5 filters a tensor may use (the writer's ``--compression gzip|lzf``)."""
TENSOR_PHASES = tuple(p for p in PHASES if p != "flags")  # training flags are an attribute
_ITEMSIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, OverflowError)
"""What h5py raises on a damaged file (RecursionError is a RuntimeError)."""


class TraceError(UsageError):
    """The file is not a trace xentdbg can read (exit 2)."""


def bad(path: Path, why: str) -> TraceError:
    return TraceError(f"{path} is not a usable xentdbg trace: {why}.",
                      hint="Record traces with `xentdbg trace ... --out FILE.h5`.")


# -- JSON documents ------------------------------------------------------------------------

def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "an integer", float: "a number"}
    return names.get(type(value), type(value).__name__)


class Json:
    """A JSON value's expected form; :meth:`problem` says what is wrong with ``value`` (None: nothing)."""

    def problem(self, value: Any, where: str) -> str | None:
        return None


@dataclass(frozen=True)
class Text(Json):
    max_chars: int = MAX_NAME_CHARS
    choices: tuple[str, ...] = ()

    def problem(self, value: Any, where: str) -> str | None:
        if not isinstance(value, str):
            return f"{where} is {_kind(value)}, not a string"
        if len(value) > self.max_chars:
            return f"{where} is {len(value)} characters long (at most {self.max_chars})"
        if self.choices and value not in self.choices:
            return f"{where} is {value!r}, not one of {', '.join(self.choices)}"
        return None


@dataclass(frozen=True)
class Integer(Json):
    minimum: int = 0
    maximum: int = 1 << 62

    def problem(self, value: Any, where: str) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{where} is {_kind(value)}, not an integer"
        if not self.minimum <= value <= self.maximum:
            return f"{where} is {value}, outside {self.minimum}..{self.maximum}"
        return None


@dataclass(frozen=True)
class Scalar(Json):
    """A string (bounded), number, boolean or null: what a report prints as it is."""

    def problem(self, value: Any, where: str) -> str | None:
        if isinstance(value, str):
            return Text().problem(value, where)
        if value is None or isinstance(value, (bool, int, float)):
            return None
        return f"{where} is {_kind(value)}, not a string, number, boolean or null"


@dataclass(frozen=True)
class Nullable(Json):
    inner: Json

    def problem(self, value: Any, where: str) -> str | None:
        return None if value is None else self.inner.problem(value, where)


@dataclass(frozen=True)
class Array(Json):
    items: Json
    max_items: int = MAX_TABLE

    def problem(self, value: Any, where: str) -> str | None:
        if not isinstance(value, list):
            return f"{where} is {_kind(value)}, not a list"
        if len(value) > self.max_items:
            return f"{where} has {len(value)} entries (at most {self.max_items})"
        for i, item in enumerate(value):
            if (p := self.items.problem(item, f"{where}[{i}]")) is not None:
                return p
        return None


@dataclass(frozen=True)
class Object(Json):
    """An object; ``fields`` as given (those in ``required`` must be there), other keys
    ``values`` (None: any JSON; ``closed``: no other keys)."""

    fields: Mapping[str, Json] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    values: Json | None = None
    closed: bool = False

    def problem(self, value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} is {_kind(value)}, not an object"
        if len(value) > MAX_TABLE:
            return f"{where} has {len(value)} keys (at most {MAX_TABLE})"
        for key in self.required:
            if key not in value:
                return f"{where} has no {key!r}"
        for key, item in value.items():
            spec = self.fields.get(key, self.values)
            if spec is None:
                if self.closed:
                    return f"{where} has the unknown key {key!r}"
                continue
            if (p := spec.problem(item, f"{where}.{key}")) is not None:
                return p
        return None


@dataclass(frozen=True)
class Checked(Json):
    """``inner``'s form, then ``rule`` across its fields (a problem, or None)."""

    inner: Json
    rule: Callable[[Any], str | None]

    def problem(self, value: Any, where: str) -> str | None:
        return self.inner.problem(value, where) or self.rule(value)


SHORT = Text()
RANK = Checked(Object({"rank": Integer(0, MAX_WORLD - 1), "world_size": Integer(1, MAX_WORLD), "strategy": SHORT,
                       "run": SHORT, "reduced": SHORT, "process": Integer(0, MAX_WORLD - 1),
                       "processes": Integer(1, MAX_WORLD)},
                      required=("rank", "world_size", "strategy", "run", "reduced")), rank_problem)
"""``meta.rank`` of a rank file (:class:`xentdbg.trace.ranks.RankMeta`); other keys are kept, unread."""
DATA = Object({"source": SHORT, "subset": Integer(1), "task": Text(choices=get_args(Task)),
               "pixels": Text(choices=get_args(Pixels)), "batch_size": Integer(1),
               "layout": Text(choices=tuple(LAYOUT_SHAPES)), "labels": Text(choices=get_args(Labels))}, closed=True)
"""``meta.data``: :class:`xentdbg.data.DataSpec`'s fields, each optional."""
META = Object({"command": Text(MAX_COMMAND_CHARS), "frameworks": Object(values=Scalar()),
               "env": Object(values=SHORT), "data": DATA, "steps": Integer(), "every": Integer(1),
               "setup_sha256": Nullable(SHORT), "rank": RANK, **{k: Nullable(SHORT) for k in (
                   "xentdbg", "python", "platform", "kind", "devices", "setup", "created", "init_from")}})
"""``meta``: every key optional (the reader shows what is there); unknown keys kept."""
TENSOR_SPEC = Object({"name": SHORT, "shape": Array(Integer(), 32), "dtype": SHORT},
                     required=("name", "shape", "dtype"))
INFO = Object({"kind": SHORT, "framework": Object(values=Scalar()), "layers": Array(SHORT), "probe": Array(SHORT),
               "oracle": Array(SHORT),
               "params": Array(TENSOR_SPEC), "state": Array(TENSOR_SPEC)},
              required=("kind", "framework", "layers", "params", "state"))
FLAGS = Object(values=Nullable(Scalar()))
"""layer name -> the training value it received: a boolean, null, or a symbolic value's text."""
DIGESTS = Object(values=SHORT)
VERDICT = Object()


# -- the layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attr:
    """An attribute: ``kind`` "text", "int", "bool" or "json" (text holding ``json``);
    ``equals``: the one value allowed; ``convert``: what the reader keeps instead."""

    name: str
    kind: str
    json: Json | None = None
    equals: object = None
    required: bool = True
    convert: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Tensors:
    """A group of datasets named 000000, 000001, ... (table order), each with its tensor's
    name in the text attribute ``name``; ``role`` constrains their shapes (:data:`ROLES`)."""

    role: str


@dataclass(frozen=True)
class Group:
    """A group: its attributes, its children by name (names not listed are ignored, never
    opened), those ``required``. ``numbered``: every child is such a group, named by the
    step rule (the step number, zero-padded to 8 digits). ``marker``: a group whose boolean
    attribute of that name is absent or false was cut short and is skipped unread."""

    attrs: tuple[Attr, ...] = ()
    children: Mapping[str, Group | Tensors] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    numbered: Group | None = None
    marker: str | None = None


def _phases() -> dict[str, Group | Tensors]:
    return {phase: Tensors(phase) for phase in TENSOR_PHASES}


RERUN = Group(attrs=(Attr("complete", "bool"),), children=_phases(), marker="complete")
STEP = Group(attrs=(Attr("complete", "bool"), Attr("step", "int"), Attr("flags", "json", FLAGS),
                    Attr("digests", "json", DIGESTS), Attr("crossfeed", "json", VERDICT, required=False)),
             children={**_phases(), **{kind: RERUN for kind in RERUNS}}, required=("loss",), marker="complete")
ROOT = Group(
    attrs=(Attr("format", "text", equals=FORMAT), Attr("format_version", "int", equals=FORMAT_VERSION),
           Attr("meta", "json", META), Attr("info", "json", INFO, convert=side_info_from_dict)),
    children={"initial": Group(children={"params": Tensors("initial/params"), "state": Tensors("initial/state")},
                               required=("params", "state")),
              "steps": Group(numbered=STEP)},
    required=("initial", "steps"))
"""The whole file (docs/trace-format.md, "Layout")."""


@dataclass(frozen=True)
class TensorRef:
    """One checked tensor: its name (attribute), HDF5 path, declared shape and dtype."""

    name: str
    path: str
    shape: tuple[int, ...]
    dtype: np.dtype


def _table(which: str, empty_ok: bool) -> Callable[[list[TensorRef], SideInfo], str | None]:
    def rule(tensors: list[TensorRef], info: SideInfo) -> str | None:
        table = getattr(info, which)
        if len(tensors) != len(table) and not (empty_ok and not tensors):
            return f"holds {len(tensors)} tensors, the {which} table lists {len(table)}"
        for t, spec in zip(tensors, table):
            if t.shape != spec.shape:
                return f"{t.path} has shape {t.shape}, the parameter table says {spec.shape}"
        return None
    return rule


def _loss(tensors: list[TensorRef], info: SideInfo) -> str | None:
    if len(tensors) != 1:
        return f"holds {len(tensors)} tensors, a loss is one"
    if math.prod(tensors[0].shape) != 1:
        return f"{tensors[0].path} has shape {tensors[0].shape}, a loss is a scalar"
    return None


def _inputs(tensors: list[TensorRef], info: SideInfo) -> str | None:
    for t in tensors:
        if len(t.shape) != 1 or t.shape[0] > MAX_SAMPLES:
            return f"{t.path} has shape {t.shape}, inputs are per-sample vectors (at most {MAX_SAMPLES} samples)"
        if t.shape != tensors[0].shape:
            return f"{t.path} has shape {t.shape}, {tensors[0].path} {tensors[0].shape}: one batch"
    return None


def _any(tensors: list[TensorRef], info: SideInfo) -> str | None:
    return None  # activations: any shape, within the byte limits every tensor has


ROLES: dict[str, Callable[[list[TensorRef], SideInfo], str | None]] = {
    "initial/params": _table("params", False), "initial/state": _table("state", False),
    "gradients": _table("params", True), "weights": _table("params", True), "state": _table("state", True),
    "loss": _loss, "inputs": _inputs, "activations": _any}
"""What each role allows; the tables are ``info.params`` and ``info.state``. A step's
gradients, weights and state hold the whole table or nothing (``--only``)."""


# -- the walk --------------------------------------------------------------------------------

@dataclass
class Found:
    """What the walk kept of one group: converted attribute values, children (None: cut short)."""

    attrs: dict[str, Any]
    children: dict[str, Found | list[TensorRef]]


@dataclass
class _Walk:
    path: Path
    file_size: int
    seen: dict[int, str] = field(default_factory=dict)  # object address -> the path it was reached by
    values: dict[str, Any] = field(default_factory=dict)  # converted attributes (``info``)
    declared: int = 0
    where: str = "/"

    def bad(self, why: str) -> TraceError:
        return bad(self.path, why)


def walk(path: Path, f: Any) -> Found:
    """Check the open file ``f`` against :data:`ROOT`; the checked layout, or :class:`TraceError`."""
    ctx = _Walk(path, path.stat().st_size)
    try:
        found = _group(ctx, f, ROOT, "/")
    except TraceError:
        raise
    except H5_ERRORS as e:
        raise ctx.bad(f"reading {ctx.where} failed ({_short(e)})") from None
    cap = min(MAX_FILE_DECLARED_BYTES, MAX_EXPANSION * ctx.file_size + SLACK_BYTES)
    if ctx.declared > cap:
        raise ctx.bad(f"its tensors declare {_size(ctx.declared)} in all, more than {_size(cap)} "
                      f"({MAX_EXPANSION} times the file's {_size(ctx.file_size)})")
    return found


def _short(e: BaseException) -> str:
    text = str(e).split("(")[0].strip() if isinstance(e, OSError) else str(e)
    return (text or type(e).__name__)[:300]


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def _visit(ctx: _Walk, obj: Any, where: str) -> None:
    """Each object once: a second hard link to one (a cycle, or a shared tensor) is refused."""
    import h5py

    info = h5py.h5o.get_info(obj.id)
    if info.addr in ctx.seen:
        raise ctx.bad(f"{where} is another link to {ctx.seen[info.addr]} (hard-link cycles and shared objects "
                      "are refused)")
    if info.rc != 1:
        raise ctx.bad(f"{where} has {info.rc} hard links (a writer makes one; cycles and shared objects are refused)")
    ctx.seen[info.addr] = where


def _child(ctx: _Walk, group: Any, key: str, where: str) -> Any:
    """The object a plain hard link names (external and soft links are refused)."""
    import h5py

    ctx.where = where
    link = group.get(key, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise ctx.bad(f"{where} is an external link to {link.filename} (refused)")
    if isinstance(link, h5py.SoftLink):
        raise ctx.bad(f"{where} is a soft link (refused)")
    if not isinstance(link, h5py.HardLink):
        raise ctx.bad(f"{where} is a {type(link).__name__} (refused)")
    obj = group[key]
    if not isinstance(obj, (h5py.Group, h5py.Dataset)):
        raise ctx.bad(f"{where} is a {type(obj).__name__} (refused)")
    _visit(ctx, obj, where)
    return obj


def _group(ctx: _Walk, obj: Any, node: Group, where: str) -> Found:
    import h5py

    if not isinstance(obj, h5py.Group):
        raise ctx.bad(f"{where} is a dataset, not a group")
    if where == "/":
        _visit(ctx, obj, where)
    attrs: dict[str, Any] = {}
    for spec in node.attrs:  # the marker comes first: nothing else of a cut-short group is read
        attrs[spec.name] = _attr(ctx, obj, spec, where)
        if spec.name == node.marker and attrs[spec.name] is not True:
            return Found(attrs, {})
    children: dict[str, Found | list[TensorRef]] = {}
    keys = list(obj)
    at = where.rstrip("/")
    if node.numbered is not None:
        for key in sorted(keys, key=lambda k: (len(k), k)):
            if not (key.isdigit() and key.isascii() and key == f"{int(key):08d}"):
                raise ctx.bad(f"step group {at}/{key} is mislabelled (not named by the 8-digit step rule)")
            found = _group(ctx, _child(ctx, obj, key, f"{at}/{key}"), node.numbered, f"{at}/{key}")
            if "step" in found.attrs and found.attrs["step"] != int(key):
                raise ctx.bad(f"step group {at}/{key} is mislabelled (its attribute step is {found.attrs['step']})")
            children[key] = found
        return Found(attrs, children)
    for name in node.required:
        if name not in keys:
            raise ctx.bad(f"group {at}/{name} is missing")
    for key, sub in node.children.items():
        if key in keys:
            child = _child(ctx, obj, key, f"{at}/{key}")
            children[key] = (_tensors(ctx, child, sub, f"{at}/{key}") if isinstance(sub, Tensors)
                             else _group(ctx, child, sub, f"{at}/{key}"))
    return Found(attrs, children)


def _attr(ctx: _Walk, obj: Any, spec: Attr, where: str) -> Any:
    """One attribute, checked (dataspace, size, type, JSON form) before and after it is read."""
    import h5py

    label = f"attribute {spec.name!r} of {where}"
    ctx.where = label
    if spec.name not in obj.attrs:
        if spec.required and spec.kind != "bool":
            missing = {"format": "it has no xentdbg format marker", "format_version": "it has no format version"}
            raise ctx.bad(missing.get(spec.name, f"{label} is missing"))
        return None
    aid = h5py.h5a.open(obj.id, spec.name.encode())
    if aid.get_space().get_simple_extent_type() != h5py.h5s.SCALAR:
        if spec.name == "format":
            raise ctx.bad("it has no xentdbg format marker")
        raise ctx.bad(f"{label} is not a single value (shape {aid.shape})")
    if aid.get_storage_size() > MAX_ATTR_BYTES:
        raise ctx.bad(f"{label} stores {_size(aid.get_storage_size())}")
    value = obj.attrs[spec.name]
    if spec.kind in ("text", "json"):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            if spec.name == "format":
                raise ctx.bad("it has no xentdbg format marker")
            raise ctx.bad(f"{label} is {type(value).__name__}, not text")
        if len(value) > MAX_ATTR_CHARS:
            raise ctx.bad(f"{label} is {len(value)} characters long")
    elif spec.kind == "int":
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise ctx.bad(f"{label} is {type(value).__name__}, not an integer")
        value = int(value)
    elif spec.kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ctx.bad(f"{label} is {type(value).__name__}, not a boolean")
        value = bool(value)
    if spec.equals is not None and value != spec.equals:
        if spec.name == "format":
            raise ctx.bad("it has no xentdbg format marker")
        if spec.name == "format_version":
            raise ctx.bad(f"format version {value}; this xentdbg reads version {FORMAT_VERSION}")
        raise ctx.bad(f"{label} is {value!r}, not {spec.equals!r}")
    if spec.kind == "json":
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:
            raise ctx.bad(f"{label} is not JSON ({_short(e)})") from None
        assert spec.json is not None
        if (problem := spec.json.problem(value, spec.name)) is not None:
            raise ctx.bad(f"{label} is malformed: {problem}")
    if spec.convert is not None:
        value = spec.convert(value)
        ctx.values[spec.name] = value
    return value


def _tensors(ctx: _Walk, obj: Any, node: Tensors, where: str) -> list[TensorRef]:
    import h5py

    if not isinstance(obj, h5py.Group):
        raise ctx.bad(f"{where} is a dataset, not a group of tensors")
    keys = sorted(obj, key=lambda k: (len(k), k))
    expected = [f"{i:06d}" for i in range(len(keys))]
    if keys != expected:
        wrong = next(k for k, e in zip(keys, expected) if k != e)
        raise ctx.bad(f"{where}/{wrong} is misnamed (tensors are numbered 000000, 000001, ... in table order)")
    datasets = [(_child(ctx, obj, key, f"{where}/{key}"), f"{where}/{key}") for key in keys]
    tensors = [_declared(ctx, ds, at) for ds, at in datasets]
    if (problem := ROLES[node.role](tensors, ctx.values["info"])) is not None:
        raise ctx.bad(problem if problem.startswith("/") else f"{where} {problem}")
    for (ds, _), ref in zip(datasets, tensors):
        _stored(ctx, ds, ref)
    return tensors


def _declared(ctx: _Walk, ds: Any, where: str) -> TensorRef:
    """One tensor, by what it declares: a plain dataset (not virtual, no external storage),
    a scalar or simple dataspace, a numeric dtype, at most :data:`MAX_TENSOR_BYTES`, a name."""
    import h5py

    if not isinstance(ds, h5py.Dataset):
        raise ctx.bad(f"{where} is a group, not a dataset")
    plist = ds.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise ctx.bad(f"{where} is a virtual dataset (refused)")
    if plist.get_external_count():
        raise ctx.bad(f"{where} stores its data in external files (refused)")
    if ds.id.get_space().get_simple_extent_type() not in (h5py.h5s.SCALAR, h5py.h5s.SIMPLE):
        raise ctx.bad(f"{where} has an empty (null) dataspace, not a tensor")
    dtype = ds.dtype
    if dtype.kind not in _ITEMSIZES or dtype.names or dtype.subdtype:  # object/vlen/str/compound
        raise ctx.bad(f"{where} has dtype {dtype} (only numeric tensors are allowed)")
    if dtype.itemsize not in _ITEMSIZES[dtype.kind]:
        raise ctx.bad(f"{where} has dtype {dtype} (only numeric tensors are allowed: bool, integers, "
                      "float16/32/64)")
    shape = tuple(int(n) for n in ds.shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise ctx.bad(f"{where} declares shape {shape} ({_size(nbytes)}; a tensor may declare "
                      f"{_size(MAX_TENSOR_BYTES)})")
    name = _attr(ctx, ds, Attr("name", "text"), where)
    if len(name) > MAX_NAME_CHARS:
        raise ctx.bad(f"attribute 'name' of {where} is {len(name)} characters long (at most {MAX_NAME_CHARS})")
    return TensorRef(name, where, shape, dtype)


def _stored(ctx: _Walk, ds: Any, ref: TensorRef) -> None:
    """How a tensor is stored: known filters only, chunks no larger than the tensor (or
    1 MiB) nor :data:`MAX_CHUNK_BYTES`, storage within the file, at most
    :data:`MAX_EXPANSION` times expanded. Adds its bytes to the file's budget."""
    import h5py

    where, plist = ref.path, ds.id.get_create_plist()
    nbytes = math.prod(ref.shape) * ref.dtype.itemsize
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in FILTERS:
            raise ctx.bad(f"{where} uses HDF5 filter {code} (only {', '.join(FILTERS.values())})")
    if plist.get_layout() == h5py.h5d.CHUNKED:
        chunk = math.prod(plist.get_chunk()) * ref.dtype.itemsize
        if chunk > min(MAX_CHUNK_BYTES, max(nbytes, SLACK_BYTES)):
            raise ctx.bad(f"{where} declares chunks of {_size(chunk)} for a tensor of {_size(nbytes)}")
    ctx.where = where
    stored = ds.id.get_storage_size()
    if stored > ctx.file_size:
        raise ctx.bad(f"{where} claims {_size(stored)} of storage; the file holds {_size(ctx.file_size)}")
    if nbytes > MAX_EXPANSION * stored + SLACK_BYTES:
        raise ctx.bad(f"{where} declares shape {ref.shape} ({_size(nbytes)}) but stores {_size(stored)}: "
                      f"never written, or expanded more than {MAX_EXPANSION} times")
    ctx.declared += nbytes


@dataclass
class StepLayout:
    """A complete step: its tensors by phase, attributes, and complete re-runs by kind."""

    step: int
    tensors: dict[str, list[TensorRef]]
    flags: dict
    digests: dict
    verdict: dict | None
    reruns: dict[str, dict[str, list[TensorRef]]]


@dataclass
class Layout:
    """A checked trace: ``meta``, ``info``, the initial tensors, the complete steps in order."""

    meta: dict
    info: SideInfo
    initial: tuple[list[TensorRef], list[TensorRef]]
    steps: dict[int, StepLayout]


def _phases_of(found: Found) -> dict[str, list[TensorRef]]:
    return {p: t for p in TENSOR_PHASES if isinstance(t := found.children.get(p), list)}


def layout(found: Found) -> Layout:
    """The :class:`Layout` of a file :func:`walk` accepted (steps cut short left out)."""
    initial = found.children["initial"]
    steps = found.children["steps"]
    assert isinstance(initial, Found) and isinstance(steps, Found)
    params, state = initial.children["params"], initial.children["state"]
    assert isinstance(params, list) and isinstance(state, list)
    kept: dict[int, StepLayout] = {}
    for key, step in steps.children.items():
        assert isinstance(step, Found)
        if step.attrs.get("complete") is not True:
            continue
        reruns = {kind: _phases_of(sub) for kind in RERUNS
                  if isinstance(sub := step.children.get(kind), Found) and sub.attrs.get("complete") is True}
        kept[int(key)] = StepLayout(int(key), _phases_of(step), step.attrs["flags"], step.attrs["digests"],
                                    step.attrs.get("crossfeed"), reruns)
    return Layout(found.attrs["meta"], found.attrs["info"], (params, state), dict(sorted(kept.items())))


def check(path: Path, f: Any) -> Layout:
    """:func:`walk` then :func:`layout`: the one entry point the reader uses."""
    return layout(walk(path, f))


__all__: Sequence[str] = ("FILTERS", "MAX_EXPANSION", "MAX_FILE_DECLARED_BYTES", "MAX_TENSOR_BYTES", "ROOT",
                          "Layout", "StepLayout", "TensorRef", "TraceError", "bad", "check")
