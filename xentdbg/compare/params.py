"""Pair the parameters (and non-trainable state) of two setups by structure. Pure.

Two setups that build the same network list its variables differently:

- Keras lists them in layer order, ``dense/kernel, dense/bias, dense_1/kernel, ...``;
- a JAX pytree of dicts is flattened with its keys sorted
  (``jax.tree_util`` sorts dict keys), so Flax's ``{"Dense_0": {"kernel", "bias"}}``
  gives ``['Dense_0']['bias']`` before ``['Dense_0']['kernel']``, and a flat dict
  ``{"w1", "b1", "w2", "b2"}`` gives ``b1, b2, w1, w2``;
- stax keeps a conv bias as ``(1, 1, 1, C)`` where Keras keeps ``(C,)``;
- a layer frozen with ``trainable=False`` moves its kernel and bias from the trainable
  variables to the non-trainable ones (Keras ``Layer.trainable_variables`` /
  ``non_trainable_variables``).

:func:`match_parameters` pairs them as a reader would: layer by layer, kernel with kernel
by role (the name's last part), shapes equal up to axes of size 1. A parameter one side
trains and the other holds as non-trainable state is paired as :class:`Frozen`. Where
the structure leaves a choice (two layers of one shape whose order says nothing: dict
keys sorted by name), nothing is guessed: the problem asks for an explicit mapping
(``--pair FILE``, :func:`match_parameters`'s ``explicit``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from xentdbg.records import TensorSpec

# The role of a variable from the last part of its name; rank orders a layer's variables.
_ROLE_RANK = {
    "kernel": 0, "w": 0, "weight": 0, "weights": 0, "embeddings": 0, "embedding": 0, "depthwise_kernel": 0,
    "gamma": 1, "scale": 1,
    "bias": 2, "b": 2, "beta": 2, "offset": 2,
    "moving_mean": 3, "mean": 3, "running_mean": 3,
    "moving_variance": 4, "var": 4, "variance": 4, "running_var": 4,
}
_UNKNOWN_ROLE = 9
_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")
_FLAT = re.compile(r"^([A-Za-z]+)_?(\d+)$")  # w1, b_2: a flat dict's "role + layer number"
_NATURAL = re.compile(r"(\d+)")


def squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` without its axes of size 1: ``(1, 1, 1, 8) -> (8,)``."""
    return tuple(int(d) for d in shape if d != 1)


def compatible(a: Sequence[int], b: Sequence[int]) -> bool:
    """Shapes equal up to axes of size 1 (one reshape turns either into the other)."""
    return tuple(a) == tuple(b) or squeezed(a) == squeezed(b)


def as_shape(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``x`` viewed in ``shape`` when the two differ only by axes of size 1 (a stax conv
    bias ``(1, 1, 1, C)`` paired with Keras's ``(C,)``); else ``x`` unchanged."""
    x, shape = np.asarray(x), tuple(shape)
    return x.reshape(shape) if x.shape != shape and compatible(x.shape, shape) else x


@dataclass(frozen=True)
class Frozen:
    """A parameter side ``trainer`` trains (index ``param`` in its parameters) that the
    other side holds as non-trainable state (index ``state`` in its state)."""

    trainer: str  # "A" or "B"
    param: int
    state: int
    name: str  # the trainer's name for it
    held_as: str  # the other side's name for it

    @property
    def holder(self) -> str:
        return "B" if self.trainer == "A" else "A"

    def to_dict(self) -> dict:
        return {"trainer": self.trainer, "param": self.name, "state": self.held_as}


@dataclass(frozen=True)
class ParamMatching:
    """Parameters ``params`` ``[(i_a, i_b)]`` and state ``state`` pairs, in A's order;
    ``frozen`` pairs across the two; ``problems`` say what could not be paired (the
    parameters must all pair for a replay); ``notes`` say how they were paired."""

    params: list[tuple[int, int]]
    state: list[tuple[int, int]]
    frozen: list[Frozen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    state_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Layer:
    name: str  # the layer's own name (last part of its path), "" when none
    path: tuple[str, ...]
    members: list[int]  # indices into the pool, in role order
    roles: list[int]
    shapes: list[tuple[int, ...]]
    keyed: bool  # the order came from sorted dict keys, not from the model

    @property
    def signature(self) -> tuple:
        return tuple(squeezed(s) for s in self.shapes)

    def label(self, specs: Sequence[TensorSpec]) -> str:
        return self.name or specs[self.members[0]].name


def _split(name: str) -> tuple[tuple[str, ...], str, bool]:
    """``(layer path, role, keyed)`` of a variable name. ``keyed``: a JAX key path of dict keys."""
    keyed = name.startswith("['")
    tokens = _TOKEN.findall(re.sub(r":\d+$", "", name))  # tf_keras appends ":0"
    if not tokens:
        return (), name, keyed
    role = tokens[-1]
    flat = _FLAT.match(role)
    if flat and flat.group(1).lower() in _ROLE_RANK:
        return (*tokens[:-1], flat.group(2)), flat.group(1), keyed
    return tuple(tokens[:-1]), role, keyed


def layer_and_role(name: str) -> tuple[tuple[str, ...], str]:
    """The layer path and role of a variable name, in any library's spelling:
    ``sequential/batch_normalization/moving_mean`` -> ``(("sequential",
    "batch_normalization"), "moving_mean")``, ``['bn']['mean']`` -> ``(("bn",), "mean")``."""
    path, role, _ = _split(name)
    return path, role


def _layers(specs: Sequence[TensorSpec], pool: Sequence[int]) -> list[_Layer]:
    """Group the tensors ``pool`` (indices into ``specs``) by layer, in the order of their
    first tensor; within a layer, by role (kernel, scale, bias, statistics, the rest in
    their own order). A keyed side's layers are put in natural name order (``Dense_2``
    before ``Dense_10``)."""
    groups: dict[tuple[str, ...], list[tuple[int, int, int]]] = {}
    keyed = False
    for order, i in enumerate(pool):
        path, role, k = _split(specs[i].name)
        keyed = keyed or k
        groups.setdefault(path, []).append((_ROLE_RANK.get(role.lower(), _UNKNOWN_ROLE), order, i))
    layers = []
    for path, members in groups.items():
        members.sort()
        layers.append(_Layer(path[-1] if path else "", path, [i for _, _, i in members], [r for r, _, _ in members],
                             [tuple(specs[i].shape) for _, _, i in members], keyed))
    if keyed:
        layers.sort(key=lambda layer: [int(t) if t.isdigit() else t for p in layer.path for t in _NATURAL.split(p)])
    return layers


def _same_roles(la: _Layer, lb: _Layer) -> bool:
    """Known roles agree position by position (an unknown role, stax's positions, fits any)."""
    return all(ra == rb or _UNKNOWN_ROLE in (ra, rb) for ra, rb in zip(la.roles, lb.roles))


def _numbered(names: list[str]) -> bool:
    """Names that differ only by a trailing number (Flax's ``Dense_0, Dense_1``): their
    natural order is the order the modules were created in."""
    stems = {re.sub(r"_?\d+$", "", n) for n in names}
    return len(stems) == 1 and all(re.search(r"\d+$", n) for n in names)


def _pair_layers(la: list[_Layer], lb: list[_Layer]) -> tuple[list[tuple[int, int]], list[str]]:
    """Pair two layer lists: by equal name and signature; then in order (``difflib``, as
    ``diff`` aligns lines) on the signatures; then each signature left that is unique on
    both sides. Returns layer index pairs and the ambiguities found."""
    pairs: list[tuple[int, int]] = []
    ambiguous: list[str] = []
    names_b = [layer.name for layer in lb]
    for i, layer in enumerate(la):
        if layer.name and names_b.count(layer.name) == 1 and [x.name for x in la].count(layer.name) == 1:
            j = names_b.index(layer.name)
            if layer.signature == lb[j].signature and _same_roles(layer, lb[j]):
                pairs.append((i, j))
    left_a = [i for i in range(len(la)) if i not in {p for p, _ in pairs}]
    left_b = [j for j in range(len(lb)) if j not in {q for _, q in pairs}]
    sa, sb = [la[i].signature for i in left_a], [lb[j].signature for j in left_b]
    matcher = difflib.SequenceMatcher(None, sa, sb, autojunk=False)
    ordered = [(left_a[i + k], left_b[j + k]) for i, j, n in matcher.get_matching_blocks() for k in range(n)]
    ordered = [(i, j) for i, j in ordered if _same_roles(la[i], lb[j])]
    # Order decides between layers of one signature only where it is the model's order:
    # a side whose layers come from sorted dict keys says nothing about which is which,
    # unless the keys are numbered (Flax's Dense_0, Dense_1).
    unsure: set[tuple] = set()
    for side, layers, index in (("A", la, 0), ("B", lb, 1)):
        by_sig: dict[tuple, list[str]] = {}
        for pair in ordered:
            layer = layers[pair[index]]
            if layer.keyed:
                by_sig.setdefault(layer.signature, []).append(layer.name)
        for sig, names in by_sig.items():
            if len(names) > 1 and not _numbered(names):
                unsure.add(sig)
                ambiguous.append(f"side {side}'s layers {', '.join(names)} have the same shapes {list(sig)} and "
                                 "their order is the sorted order of dict keys, not the model's: name their "
                                 "partners with --pair FILE")
    ordered = [(i, j) for i, j in ordered if la[i].signature not in unsure]
    pairs += ordered
    left_a = [i for i in left_a if i not in {p for p, _ in ordered}]
    left_b = [j for j in left_b if j not in {q for _, q in ordered}]
    for i in left_a:
        same_a = [k for k in left_a if la[k].signature == la[i].signature]
        same_b = [j for j in left_b if lb[j].signature == la[i].signature]
        if len(same_a) == 1 and len(same_b) == 1 and _same_roles(la[i], lb[same_b[0]]):
            pairs.append((i, same_b[0]))
    return sorted(pairs), ambiguous


def _explicit(explicit: dict[str, str], pa: Sequence[TensorSpec], pb: Sequence[TensorSpec],
              sa: Sequence[TensorSpec], sb: Sequence[TensorSpec]) -> tuple[list, list[str]]:
    """Resolve ``{A name: B name}``: ``[(kind_a, i, kind_b, j)]`` with kinds "p"/"s"."""
    index_a = {t.name: ("p", i) for i, t in enumerate(pa)} | {t.name: ("s", i) for i, t in enumerate(sa)}
    index_b = {t.name: ("p", i) for i, t in enumerate(pb)} | {t.name: ("s", i) for i, t in enumerate(sb)}
    out, problems = [], []
    for name_a, name_b in explicit.items():
        if name_a not in index_a or name_b not in index_b:
            missing = [f"A has no tensor {name_a!r}"] if name_a not in index_a else []
            missing += [f"B has no tensor {name_b!r}"] if name_b not in index_b else []
            problems.append("pair file: " + "; ".join(missing))
            continue
        (ka, i), (kb, j) = index_a[name_a], index_b[name_b]
        shape_a = (pa if ka == "p" else sa)[i].shape
        shape_b = (pb if kb == "p" else sb)[j].shape
        if not compatible(shape_a, shape_b):
            problems.append(f"pair file: {name_a} {tuple(shape_a)} and {name_b} {tuple(shape_b)} differ in shape")
            continue
        out.append((ka, i, kb, j))
    return out, problems


def match_parameters(pa: Sequence[TensorSpec], pb: Sequence[TensorSpec], sa: Sequence[TensorSpec] = (),
                     sb: Sequence[TensorSpec] = (), explicit: dict[str, str] | None = None) -> ParamMatching:
    """Pair A's parameters ``pa`` and state ``sa`` with B's ``pb`` and ``sb``.

    1. ``explicit`` ``{A name: B name}`` pairs first (a parameter with a parameter, a
       state tensor with a state tensor, or one side's parameter with the other's state).
    2. Same count, same shapes in order, no side keyed by sorted dict keys: one to one
       in order (two setups of one framework).
    3. Otherwise by structure: tensors grouped by layer (the name's path), ordered by
       role within a layer; layers paired by equal name, then in order on their shapes
       up to size-1 axes (:mod:`difflib`), then by a shape signature unique on both sides.
    4. A layer one side trains and the other holds as state (``trainable=False``) pairs
       as :class:`Frozen`.
    State tensors are paired the same way; state that does not pair is not compared
    (``state_problems``), parameters that do not pair are ``problems``.
    """
    claimed_pa: set[int] = set()
    claimed_pb: set[int] = set()
    claimed_sa: set[int] = set()
    claimed_sb: set[int] = set()
    params: list[tuple[int, int]] = []
    state: list[tuple[int, int]] = []
    frozen: list[Frozen] = []
    problems: list[str] = []
    notes: list[str] = []
    if explicit:
        resolved, problems = _explicit(explicit, pa, pb, sa, sb)
        for ka, i, kb, j in resolved:
            (claimed_pa if ka == "p" else claimed_sa).add(i)
            (claimed_pb if kb == "p" else claimed_sb).add(j)
            if ka == kb:
                (params if ka == "p" else state).append((i, j))
            elif ka == "p":
                frozen.append(Frozen("A", i, j, pa[i].name, sb[j].name))
            else:
                frozen.append(Frozen("B", j, i, pb[j].name, sa[i].name))
        notes.append(f"{len(resolved)} tensor pairs from the pair file")
    keyed = any(t.name.startswith("['") for t in (*pa, *pb))
    if (not explicit and not keyed and len(pa) == len(pb)
            and all(tuple(x.shape) == tuple(y.shape) for x, y in zip(pa, pb))):
        params = [(i, i) for i in range(len(pa))]
        claimed_pa, claimed_pb = set(range(len(pa))), set(range(len(pb)))
    else:
        layer_a = _layers(pa, [i for i in range(len(pa)) if i not in claimed_pa])
        layer_b = _layers(pb, [j for j in range(len(pb)) if j not in claimed_pb])
        pairs, ambiguous = _pair_layers(layer_a, layer_b)
        problems += ambiguous
        for li, lj in pairs:
            params += list(zip(layer_a[li].members, layer_b[lj].members))
        claimed_pa |= {i for i, _ in params}
        claimed_pb |= {j for _, j in params}
        reordered = [j for _, j in sorted(params)] != sorted(j for _, j in params)
        if not problems and (reordered or any(pa[i].name != pb[j].name for i, j in params)):
            notes.append("parameters paired by layer and role (names or orders differ): "
                         + ", ".join(f"{pa[i].name} ↔ {pb[j].name}" for i, j in params))
        # 4. frozen: a layer left on one side's parameters, found among the other's state
        for trainer, p_specs, p_claimed, s_specs, s_claimed in (("A", pa, claimed_pa, sb, claimed_sb),
                                                                ("B", pb, claimed_pb, sa, claimed_sa)):
            left = _layers(p_specs, [i for i in range(len(p_specs)) if i not in p_claimed])
            held = _layers(s_specs, [j for j in range(len(s_specs)) if j not in s_claimed])
            found, _ = _pair_layers(left, held)
            for li, lj in found:
                for i, j in zip(left[li].members, held[lj].members):
                    frozen.append(Frozen(trainer, i, j, p_specs[i].name, s_specs[j].name))
                    p_claimed.add(i)
                    s_claimed.add(j)
    if frozen:
        notes.append("trainable on one side, non-trainable state on the other (a frozen layer), compared as "
                     "weights against state: " + ", ".join(f"{f.trainer} {f.name} ↔ {f.holder} {f.held_as}"
                                                           for f in frozen))
    reshaped = [f"{pa[i].name} {tuple(pa[i].shape)} ↔ {pb[j].name} {tuple(pb[j].shape)}"
                for i, j in params if tuple(pa[i].shape) != tuple(pb[j].shape)]
    if reshaped:
        notes.append("shapes equal up to axes of size 1, compared reshaped: " + ", ".join(reshaped))
    left_a = [f"A {pa[i].name} {tuple(pa[i].shape)}" for i in range(len(pa)) if i not in claimed_pa]
    left_b = [f"B {pb[j].name} {tuple(pb[j].shape)}" for j in range(len(pb)) if j not in claimed_pb]
    if left_a or left_b:
        problems.append("unpaired: " + ", ".join(left_a + left_b))
    state_problems = _pair_state(sa, sb, claimed_sa, claimed_sb, state)
    params.sort()
    state.sort()
    return ParamMatching(params if not problems else [], state, frozen, problems, notes, state_problems)


def _pair_state(sa: Sequence[TensorSpec], sb: Sequence[TensorSpec], claimed_a: set[int], claimed_b: set[int],
                state: list[tuple[int, int]]) -> list[str]:
    """Pair the state not claimed yet (in order when it agrees, else by structure) into
    ``state``; returns what stays unpaired."""
    pool_a = [i for i in range(len(sa)) if i not in claimed_a]
    pool_b = [j for j in range(len(sb)) if j not in claimed_b]
    if [tuple(sa[i].shape) for i in pool_a] == [tuple(sb[j].shape) for j in pool_b]:
        state += list(zip(pool_a, pool_b))
        return []
    layer_a, layer_b = _layers(sa, pool_a), _layers(sb, pool_b)
    pairs, ambiguous = _pair_layers(layer_a, layer_b)
    for li, lj in pairs:
        state += list(zip(layer_a[li].members, layer_b[lj].members))
    left = ([f"A {sa[i].name} {tuple(sa[i].shape)}" for i in pool_a if i not in {p for p, _ in state}] +
            [f"B {sb[j].name} {tuple(sb[j].shape)}" for j in pool_b if j not in {q for _, q in state}])
    return ambiguous + (["unpaired: " + ", ".join(left)] if left else [])


class Pairs(Protocol):
    """What :func:`transfer` reads: a :class:`ParamMatching`, or the comparison's ``Pairing``."""

    @property
    def params(self) -> list[tuple[int, int]]: ...
    @property
    def state(self) -> list[tuple[int, int]]: ...
    @property
    def frozen(self) -> list[Frozen]: ...


def transfer(m: Pairs, params: Sequence[np.ndarray], state: Sequence[np.ndarray],
             dst_params: Sequence[TensorSpec], dst_state: Sequence[TensorSpec], to_b: bool,
             own_state: Sequence[np.ndarray] | None = None) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """One side's ``params`` and ``state`` laid out as the other side's (B's when
    ``to_b``), each reshaped to the destination's shape (a view: axes of size 1 only).

    A frozen pair carries a parameter into the other side's state slot and back. Returns
    ``(params, state)``: ``params`` is None unless every destination parameter is
    covered; destination state slots left uncovered take ``own_state`` (the destination's
    own values) or, without it, make ``state`` None. ``state`` is ``[]`` when the
    destination has none."""
    out_p: list[np.ndarray | None] = [None] * len(dst_params)
    out_s: list[np.ndarray | None] = list(own_state) if own_state is not None else [None] * len(dst_state)

    def put(out: list, k: int, value: np.ndarray, spec: TensorSpec) -> None:
        out[k] = np.reshape(value, spec.shape)

    for i, j in m.params:
        src, dst = (i, j) if to_b else (j, i)
        if src < len(params):
            put(out_p, dst, params[src], dst_params[dst])
    for i, j in m.state:
        src, dst = (i, j) if to_b else (j, i)
        if src < len(state):
            put(out_s, dst, state[src], dst_state[dst])
    for f in m.frozen:
        into_holder = (f.trainer == "A") == to_b  # the destination holds it as state
        if into_holder and f.param < len(params) and f.state < len(dst_state):
            put(out_s, f.state, params[f.param], dst_state[f.state])
        elif not into_holder and f.state < len(state) and f.param < len(dst_params):
            put(out_p, f.param, state[f.state], dst_params[f.param])
    full_p = None if any(v is None for v in out_p) else [v for v in out_p if v is not None]
    full_s = None if any(v is None for v in out_s) else [v for v in out_s if v is not None]
    return full_p, full_s

