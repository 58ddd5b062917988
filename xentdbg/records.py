"""What one side captured: plain records that cross process boundaries and feed comparison.

A step is captured in a fixed phase order, which defines which divergence is "first":

``inputs`` -> ``flags`` -> ``activations`` (forward order) -> ``loss`` ->
``gradients`` (backward order: nearest the loss first) -> ``state``
(non-trainable, e.g. BatchNorm moving statistics) -> ``weights`` (after the step).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

PHASES = ("inputs", "flags", "activations", "loss", "gradients", "state", "weights")
REPLICA_PREFIX = "replica:"  # a per-replica tensor's phase on the wire: "replica:<r>:<phase>"


class CaptureMode(enum.StrEnum):
    """How much a worker captures per step, and how ``compare`` replays.

    ``FULL``: every phase, activations included, every tensor sent as its values.
    ``FINGERPRINT``: only what the step yields at little cost (inputs, training flags,
    loss, state, weights, and gradients where the step returns them anyway), tensors of
    more than :data:`xentdbg.compare.fingerprint.FULL_BELOW` elements sent as
    fingerprints. As a ``compare`` mode it means two passes: fingerprints until the
    first difference, then full capture of the steps up to it (``--fingerprint``)."""

    FULL = "full"
    FINGERPRINT = "fingerprint"


def effective_training(value: object) -> object:
    """The training value a layer acts on: ``None`` means ``False``, since layers test
    ``if training:`` (e.g. ``BatchNormalization.call``); a symbolic value's description
    (a string) stays as it is."""
    return bool(value) if value is None or isinstance(value, bool) else value


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a parameter or state tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d["dtype"])

    @classmethod
    def of(cls, name: str, array: ArrayLike) -> TensorSpec:
        return cls(name, tuple(int(s) for s in np.shape(array)), str(np.asarray(array).dtype))


@dataclass
class SideInfo:
    """What a worker reports once its setup is loaded."""

    kind: str  # "KerasFit", "JaxLoop", ...
    framework: dict[str, str]  # versions and backend
    params: list[TensorSpec]
    state: list[TensorSpec]
    layers: list[str] = field(default_factory=list)
    probe: list[str] = field(default_factory=list)  # phases its cross-feed re-run returns (Adapter.PROBE_PHASES)
    oracle: list[str] = field(default_factory=list)  # phases its float64 re-run returns (Adapter.ORACLE_PHASES)

    @property
    def replicas(self) -> int:
        """How many replicas the side trained on: :func:`replica_count` of its framework."""
        return replica_count(self.framework)


MAX_REPLICAS = 1 << 20
"""The most replicas a side (or a rank file) may declare."""


def replica_count(framework: Mapping[str, object]) -> int:
    """The replicas a side trained on, as its adapter reports them under ``replicas`` (a
    ``tf.distribute`` strategy's ``num_replicas_in_sync``, a JAX mesh's batch axis); 1 on
    one device, or for a value that is no count in ``1..MAX_REPLICAS``."""
    value = str(framework.get("replicas", "1"))
    return int(value) if value.isdigit() and 1 <= int(value) <= MAX_REPLICAS else 1


@dataclass
class StepRecord:
    """Everything one side captured in one training step, by phase, in phase order.

    ``tensors[phase]`` is a list of ``(name, array)``; ``flags`` maps a layer name to
    the ``training`` value it received (``None`` when the layer does not take one).
    ``digests`` holds SHA-1 hex digests of the input batch and its labels.
    ``fingerprinted``: the ``(phase, name)`` of tensors held as fingerprints
    (:mod:`xentdbg.compare.fingerprint`), not values.
    ``replicas``: for a side that trained data-parallel (a ``tf.distribute`` strategy),
    what each replica computed before the reduction, in replica order: ``replicas[r][phase]``
    like ``tensors[phase]`` (its loss, its local gradients, its copy of the state). The
    phases in ``tensors`` hold the step's result after the reduction (the gradients the
    optimizer applied, the state as the model reads it), the part compared with the other
    side; probes read the replicas to say where the reduction departs.
    """

    step: int
    tensors: dict[str, list[tuple[str, np.ndarray]]]
    flags: dict[str, bool | str | None] = field(default_factory=dict)  # a string: a symbolic value
    digests: dict[str, str] = field(default_factory=dict)
    fingerprinted: frozenset[tuple[str, str]] = frozenset()
    replicas: list[dict[str, list[tuple[str, np.ndarray]]]] = field(default_factory=list)

    def replica_sizes(self) -> list[int]:
        """How many samples each replica trained on, in replica order: the length of its
        ``inputs`` ``x`` sums (its slice of the global batch); empty on one device."""
        return [len(np.asarray(dict(r.get("inputs", [])).get("x", ()))) for r in self.replicas]

    @property
    def fingerprints(self) -> bool:
        return bool(self.fingerprinted)

    def arrays(self, phase: str) -> list[np.ndarray]:
        return [a for _, a in self.tensors.get(phase, [])]

    def names(self, phase: str) -> list[str]:
        return [n for n, _ in self.tensors.get(phase, [])]

    @property
    def loss(self) -> float:
        (_, value), = self.tensors["loss"]
        return float(np.asarray(value).reshape(()))

    def owned(self) -> StepRecord:
        """A copy whose arrays are its own (records from a replay view shared memory that
        later steps reuse, :mod:`xentdbg.replay.ring`)."""
        def copied(by_phase: dict[str, list[tuple[str, np.ndarray]]]) -> dict[str, list[tuple[str, np.ndarray]]]:
            return {phase: [(n, np.array(a, copy=True)) for n, a in items] for phase, items in by_phase.items()}

        return StepRecord(self.step, copied(self.tensors), dict(self.flags), dict(self.digests), self.fingerprinted,
                          [copied(r) for r in self.replicas])

    # Wire form: a header dict plus a flat array list (see xentdbg.replay.wire).
    def to_wire(self) -> tuple[dict, list[np.ndarray]]:
        layout, arrays = [], []
        for phase in PHASES:
            for name, a in self.tensors.get(phase, []):
                layout.append([phase, name])
                arrays.append(np.asarray(a))
        for r, replica in enumerate(self.replicas):
            for phase in PHASES:
                for name, a in replica.get(phase, []):
                    layout.append([f"{REPLICA_PREFIX}{r}:{phase}", name])
                    arrays.append(np.asarray(a))
        header = {"type": "step", "step": self.step, "layout": layout,
                  "flags": self.flags, "digests": self.digests,
                  "fingerprinted": sorted(self.fingerprinted)}
        return header, arrays

    @classmethod
    def from_wire(cls, header: dict, arrays: list[np.ndarray]) -> StepRecord:
        by_phase: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (phase, name), a in zip(header["layout"], arrays, strict=True):
            by_phase.setdefault(phase, []).append((name, a))
        return cls.of(header["step"], by_phase, flags=header["flags"], digests=header["digests"],
                      fingerprinted=frozenset((str(p), str(n)) for p, n in header.get("fingerprinted", [])))

    @classmethod
    def of(cls, step: int, by_phase: dict[str, list[tuple[str, np.ndarray]]], **fields: Any) -> StepRecord:
        """A record from tensors by phase, where a key ``replica:<r>:<phase>``
        (:data:`REPLICA_PREFIX`; an adapter's :meth:`~xentdbg.adapters.base.Adapter.evaluate`
        returns them under a strategy) holds replica ``r``'s tensors of that phase."""
        tensors: dict[str, list[tuple[str, np.ndarray]]] = {}
        replicas: list[dict[str, list[tuple[str, np.ndarray]]]] = []
        for key, items in by_phase.items():
            if key.startswith(REPLICA_PREFIX):
                r, phase = key[len(REPLICA_PREFIX):].split(":", 1)
                while len(replicas) <= int(r):
                    replicas.append({})
                replicas[int(r)].setdefault(phase, []).extend(items)
            else:
                tensors.setdefault(key, []).extend(items)
        return cls(step=step, tensors=tensors, replicas=replicas, **fields)



def start_record(info: SideInfo, params: list[np.ndarray], state: list[np.ndarray]) -> StepRecord:
    """A record holding a side's initial weights and state: what it held "before" step 0
    (step -1), for the first step's ``updates``."""
    return StepRecord(step=-1, tensors={"weights": [(t.name, a) for t, a in zip(info.params, params)],
                                        "state": [(t.name, a) for t, a in zip(info.state, state)]})


def batch_fingerprint(x: np.ndarray, y: np.ndarray) -> tuple[list[tuple[str, np.ndarray]], dict[str, str]]:
    """Cheap, order-sensitive summary of an input batch.

    Returns per-sample float64 sums of ``x`` and ``y`` (so a report can show *which*
    samples differ) and SHA-1 digests of the float32 bytes (exact identity).
    """
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    y32 = np.ascontiguousarray(y, dtype=np.float32)
    sums = [("x", x32.reshape(len(x32), -1).sum(axis=1, dtype=np.float64)),
            ("y", y32.reshape(len(y32), -1).sum(axis=1, dtype=np.float64))]
    digests = {"x": hashlib.sha1(x32.tobytes()).hexdigest(),
               "y": hashlib.sha1(y32.tobytes()).hexdigest()}
    return sums, digests


def side_info_to_dict(info: SideInfo) -> dict:
    return {"kind": info.kind, "framework": info.framework, "layers": info.layers, "probe": info.probe,
            "oracle": info.oracle, "params": [t.to_dict() for t in info.params],
            "state": [t.to_dict() for t in info.state]}


def side_info_from_dict(d: dict) -> SideInfo:
    return SideInfo(kind=d["kind"], framework=d["framework"], layers=d["layers"],
                    probe=[str(p) for p in d.get("probe", [])],
                    oracle=[str(p) for p in d.get("oracle", [])],
                    params=[TensorSpec.from_dict(t) for t in d["params"]],
                    state=[TensorSpec.from_dict(t) for t in d["state"]])
