"""Rank files: one trace per replica of a data-parallel step, next to the reduced trace.

``xentdbg trace SETUP --out out.h5`` of a setup that trains under a ``tf.distribute``
strategy writes ``out.h5`` (the reduced result, as for any setup) and, for each replica
``r`` of ``N``, ``out.rank<r>.h5`` (:func:`rank_path`; ``r`` zero-padded to the digits of
``N - 1``, so that the files sort in rank order). A rank file has the trace format
(docs/trace-format.md) and holds that replica's own view of each step
(:func:`rank_record`), and in its ``meta`` the key ``rank`` (:class:`RankMeta`): which
replica of how many, the strategy, the process that wrote it (one file per process on a
multi-host run: docs/multi-host.md), the run it belongs to and the file name of the
reduced trace, which lies in the same folder.

Everything here is pure (numpy only): slicing a record, the metadata's round trip.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xentdbg.records import MAX_REPLICAS, StepRecord, batch_fingerprint

RANK_KEY = "rank"
"""The key of a trace's ``meta`` that makes it a rank file."""
MAX_WORLD = MAX_REPLICAS
"""The most replicas (and processes) a rank file may declare."""
SUMS_DIGEST = "sums-sha1:"
"""Prefix of a rank file's batch digest made from the per-sample sums (:func:`sums_digests`),
when the replica's raw samples could not be confirmed: it never equals a SHA-1 of the
samples' bytes (:func:`xentdbg.records.batch_fingerprint`), so a rank's batch is never
taken for a whole batch that happens to share its sums."""


@dataclass(frozen=True)
class RankMeta:
    """What a rank file says about itself (``meta["rank"]``).

    ``rank``: the replica's global index, ``0 <= rank < world_size``; ``world_size``: the
    replicas of the run, across all processes; ``strategy``: the ``tf.distribute`` strategy
    (or, on paper, ``jax.distributed``); ``process`` of ``processes``: the process (host)
    that ran the replica and wrote this file (0 of 1 for ``MirroredStrategy``: one process
    holds every replica); ``run``: an identifier every file of one run shares; ``reduced``:
    the file name of that run's reduced trace, in the same folder as the rank file."""

    rank: int
    world_size: int
    strategy: str
    run: str
    reduced: str
    process: int = 0
    processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankMeta:
        """From a ``meta["rank"]`` the schema checked (:func:`rank_problem` is None)."""
        return cls(rank=d["rank"], world_size=d["world_size"], strategy=d["strategy"], run=d["run"],
                   reduced=d["reduced"], process=d.get("process", 0), processes=d.get("processes", 1))

    def describe(self) -> str:
        """``rank 0 of 4``."""
        return f"rank {self.rank} of {self.world_size}"

    def reduced_path(self, rank_file: str | Path) -> Path:
        """Where the reduced trace is, for the rank file at ``rank_file``."""
        return Path(rank_file).parent / self.reduced


def rank_problem(value: Any) -> str | None:
    """What is wrong with a ``meta["rank"]`` whose fields have the right JSON types
    (the schema checks those), or None: the rank inside the world, the process inside the
    processes, at most as many processes as replicas, ``reduced`` a plain file name."""
    rank, world = value.get("rank"), value.get("world_size")
    if rank >= world:
        return f"meta.rank.rank is {rank}, not below meta.rank.world_size {world}"
    process, processes = value.get("process", 0), value.get("processes", 1)
    if process >= processes:
        return f"meta.rank.process is {process}, not below meta.rank.processes {processes}"
    if processes > world:
        return f"meta.rank.processes is {processes}, more than the {world} replicas"
    name = value.get("reduced")
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        return f"meta.rank.reduced is {name!r}, not a file name (the reduced trace lies next to the rank file)"
    return None


def rank_of(meta: dict[str, Any]) -> RankMeta | None:
    """The rank metadata of a checked trace's ``meta``, or None for a trace that is not a rank file."""
    value = meta.get(RANK_KEY)
    return RankMeta.from_dict(value) if isinstance(value, dict) else None


def rank_path(out: str | Path, rank: int, world_size: int) -> Path:
    """The rank file of replica ``rank`` next to the reduced trace ``out``:
    ``out.h5`` -> ``out.rank0.h5`` (``out.rank07.h5`` among 64: the rank has the digits of
    ``world_size - 1``); a name without a suffix gets ``.rank0`` appended."""
    p = Path(out)
    digits = len(str(max(world_size - 1, 0)))
    return p.with_name(f"{p.stem}.rank{rank:0{digits}d}{p.suffix}")


def replica_rows(record: StepRecord) -> list[tuple[int, int]]:
    """Each replica's rows ``(start, stop)`` of the global batch: the replicas' slices are
    contiguous, in replica order, as long as their ``inputs`` ``x`` sums."""
    starts = np.cumsum([0, *record.replica_sizes()])
    return [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def sums_digests(inputs: list[tuple[str, np.ndarray]]) -> dict[str, str]:
    """Digests of a replica's batch from its per-sample float64 sums (:data:`SUMS_DIGEST`)."""
    return {name: SUMS_DIGEST + hashlib.sha1(np.ascontiguousarray(a, np.float64).tobytes()).hexdigest()
            for name, a in inputs}


def exact_digests(record: StepRecord, x: np.ndarray, y: np.ndarray) -> list[dict[str, str] | None]:
    """Each replica's batch digests as :func:`~xentdbg.records.batch_fingerprint` gives
    them, from ``x``, ``y``: what the dataset holds at the step's global batch. For each
    replica, None unless the global batch has the record's digests and the replica's
    slice of it has exactly the per-sample sums the replica recorded (a setup that
    shuffles or preprocesses its batch)."""
    if batch_fingerprint(x, y)[1] != record.digests:
        return [None] * len(record.replicas)
    out: list[dict[str, str] | None] = []
    for replica, (start, stop) in zip(record.replicas, replica_rows(record)):
        sums, digests = batch_fingerprint(x[start:stop], y[start:stop])
        recorded = dict(replica.get("inputs", []))
        same = all(np.array_equal(np.asarray(recorded.get(n, ())), a) for n, a in sums)
        out.append(digests if same else None)
    return out


def rank_record(record: StepRecord, rank: int, digests: dict[str, str] | None = None) -> StepRecord:
    """Replica ``rank``'s view of a step, as a record of its own: its ``inputs`` (the
    per-sample sums of its slice), the step's training flags, its rows of the joined
    ``activations`` (a layer output whose first axis is not the global batch is left out),
    its local ``loss`` (NaN when the step returned none per replica), its local
    ``gradients`` (before the all-reduce), its copy of the ``state`` and the ``weights``
    (synchronized: every replica holds the same). ``digests``: the slice's batch digests
    (:func:`exact_digests`); by default :func:`sums_digests` of its inputs."""
    if not 0 <= rank < len(record.replicas):
        raise ValueError(f"step {record.step} holds {len(record.replicas)} replicas, not replica {rank}")
    replica = record.replicas[rank]
    rows = replica_rows(record)
    start, stop = rows[rank]
    total = rows[-1][1]
    inputs = list(replica.get("inputs", []))
    acts = [(n, np.asarray(a)[start:stop]) for n, a in record.tensors.get("activations", [])
            if np.ndim(a) >= 1 and np.shape(a)[0] == total]
    loss = replica.get("loss") or [("loss", np.array(np.nan, np.float32))]
    tensors = {"inputs": inputs, "activations": acts, "loss": list(loss),
               "gradients": list(replica.get("gradients", [])), "state": list(replica.get("state", [])),
               "weights": list(record.tensors.get("weights", []))}
    return StepRecord(record.step, {p: t for p, t in tensors.items() if t or p == "loss"}, dict(record.flags),
                      dict(digests) if digests is not None else sums_digests(inputs))
