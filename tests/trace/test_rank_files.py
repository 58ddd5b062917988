"""Rank files without a framework: slicing a record into a replica's, the rank metadata's
round trip and its checks on hostile files, the size estimate, what diff says of ranks."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from xentdbg.compare.divergence import StepComparison, TensorComparison
from xentdbg.compare.metrics import TensorMetrics
from xentdbg.data import DataSpec
from xentdbg.data import load as load_data
from xentdbg.records import PHASES, SideInfo, StepRecord, TensorSpec, batch_fingerprint, replica_count
from xentdbg.replay.tracing import estimate_traces, step_bytes
from xentdbg.trace import TraceError, TraceWriter, load_trace
from xentdbg.trace.diff import diff_traces
from xentdbg.trace.rank_diff import Relation, relate, weights_agreement
from xentdbg.trace.ranks import SUMS_DIGEST, RankMeta, exact_digests, rank_path, rank_record

SIZES = (5, 5, 4)  # uneven shards, as tf.distribute splits 14 samples over 3 replicas
INFO = SideInfo("KerasLoop", {"strategy": "MirroredStrategy", "replicas": "3"},
                [TensorSpec("w", (3, 2), "float32"), TensorSpec("b", (2,), "float32")],
                [TensorSpec("m", (2,), "float32")], layers=["dense"])


def _record(step: int = 0, seed: int = 0) -> tuple[StepRecord, np.ndarray, np.ndarray]:
    """A reduced record of 3 replicas on a batch of 14 samples, built as the adapter does."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((sum(SIZES), 3)).astype(np.float32)
    y = rng.integers(0, 2, (sum(SIZES), 1)).astype(np.float32)
    inputs, digests = batch_fingerprint(x, y)
    starts = np.cumsum([0, *SIZES])
    replicas = []
    for r in range(len(SIZES)):
        replicas.append({"inputs": batch_fingerprint(x[starts[r]:starts[r + 1]], y[starts[r]:starts[r + 1]])[0],
                         "loss": [("loss", np.float32(r + 0.5))],
                         "gradients": [("w", np.full((3, 2), r, np.float32)), ("b", np.full(2, r, np.float32))],
                         "state": [("m", np.full(2, 10.0 + r, np.float32))]})
    record = StepRecord(step, {
        "inputs": inputs,
        "activations": [("dense", np.arange(sum(SIZES) * 2, dtype=np.float32).reshape(-1, 2)),
                        ("pooled", np.zeros(7, np.float32))],  # not batch-shaped: no replica's rows
        "loss": [("loss", np.float32(1.5))],
        "gradients": [("w", np.full((3, 2), 3, np.float32)), ("b", np.full(2, 3, np.float32))],
        "state": [("m", np.full(2, 10.0, np.float32))],
        "weights": [("w", np.ones((3, 2), np.float32)), ("b", np.zeros(2, np.float32))],
    }, flags={"dense": None}, digests=digests, replicas=replicas)
    return record, x, y


def test_rank_record_is_the_replicas_own_view():
    record, _, _ = _record()
    rows = [(0, 5), (5, 10), (10, 14)]
    for r, (start, stop) in enumerate(rows):
        rank = rank_record(record, r)
        assert rank.step == 0 and rank.flags == record.flags and not rank.replicas
        assert [n for n, _ in rank.tensors["inputs"]] == ["x", "y"]
        assert np.array_equal(rank.tensors["inputs"][0][1], record.tensors["inputs"][0][1][start:stop])
        (name, act), = rank.tensors["activations"]  # "pooled" is left out
        assert name == "dense" and np.array_equal(act, record.tensors["activations"][0][1][start:stop])
        assert rank.loss == r + 0.5
        assert all(np.all(g == r) for _, g in rank.tensors["gradients"])
        assert np.all(rank.tensors["state"][0][1] == 10.0 + r)
        assert rank.tensors["weights"] == record.tensors["weights"]
        assert all(v.startswith(SUMS_DIGEST) for v in rank.digests.values())
    assert rank_record(record, 0).digests != rank_record(record, 1).digests
    with pytest.raises(ValueError, match="3 replicas, not replica 3"):
        rank_record(record, 3)


def test_a_replica_without_a_loss_gets_nan():
    record, _, _ = _record()
    del record.replicas[1]["loss"]
    assert np.isnan(rank_record(record, 1).loss)


def test_exact_digests_are_the_slices_and_refuse_another_batch():
    record, x, y = _record()
    digests = exact_digests(record, x, y)
    assert digests[2] == batch_fingerprint(x[10:14], y[10:14])[1]
    assert rank_record(record, 2, digests[2]).digests == digests[2]
    assert exact_digests(record, x[::-1].copy(), y[::-1].copy()) == [None, None, None]  # not the step's batch


def test_rank_paths_sort_in_rank_order():
    assert str(rank_path("d/out.h5", 0, 4)) == "d/out.rank0.h5"
    assert str(rank_path("out.h5", 7, 64)) == "out.rank07.h5"
    assert str(rank_path("trace", 3, 4)) == "trace.rank3"
    assert replica_count({"replicas": "4"}) == 4 and replica_count({}) == 1 and replica_count({"replicas": "x"}) == 1


def _write(path, meta: dict, records: list[StepRecord], info: SideInfo = INFO) -> None:
    initial = ([np.ones((3, 2), np.float32), np.zeros(2, np.float32)], [np.full(2, 10.0, np.float32)])
    with TraceWriter(path, {"setup": "s.py", "data": DataSpec().to_dict(), **meta}, info, initial) as w:
        for record in records:
            w.write(record)


def _rank(r: int, run: str = "run1", world: int = 3) -> dict:
    return {"rank": RankMeta(r, world, "MirroredStrategy", run, "out.h5").to_dict()}


def test_rank_metadata_round_trip(tmp_path):
    record, _, _ = _record()
    _write(tmp_path / "out.rank1.h5", _rank(1), [rank_record(record, 1)])
    with load_trace(tmp_path / "out.rank1.h5") as t:
        assert t.rank == RankMeta(1, 3, "MirroredStrategy", "run1", "out.h5", 0, 1)
        assert t.rank.reduced_path(t.path) == tmp_path / "out.h5"
        back = t.record(0, load=True)
        assert np.array_equal(back.tensors["gradients"][0][1], np.full((3, 2), 1, np.float32))
    _write(tmp_path / "plain.h5", {}, [record])
    with load_trace(tmp_path / "plain.h5") as t:
        assert t.rank is None


HOSTILE = [
    ({"rank": 3, "world_size": 3}, "not below meta.rank.world_size"),
    ({"rank": -1}, "outside 0.."),
    ({"world_size": 0}, "outside 1.."),
    ({"world_size": 1 << 40}, "outside 1.."),
    ({"rank": "0"}, "not an integer"),
    ({"rank": True}, "not an integer"),
    ({"reduced": "../x.h5"}, "not a file name"),
    ({"reduced": "/etc/passwd"}, "not a file name"),
    ({"reduced": ".."}, "not a file name"),
    ({"reduced": "x" * 5000}, "characters long"),
    ({"process": 2, "processes": 2}, "not below meta.rank.processes"),
    ({"processes": 4}, "more than the 3 replicas"),
    ({"run": None}, "not a string"),
]


@pytest.mark.parametrize("change,message", HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_rank_metadata_is_refused(tmp_path, change, message):
    record, _, _ = _record()
    path = tmp_path / "bad.h5"
    _write(path, {"rank": {**RankMeta(1, 3, "MirroredStrategy", "run1", "out.h5").to_dict(), **change}},
           [rank_record(record, 1)])
    with pytest.raises(TraceError, match="meta.rank") as e:
        load_trace(path)
    assert message in str(e.value)


@pytest.mark.parametrize("value", [[0, 4], "rank 0", 0, {"rank": 0, "world_size": 4}])
def test_rank_metadata_of_the_wrong_form_is_refused(tmp_path, value):
    record, _, _ = _record()
    path = tmp_path / "bad.h5"
    _write(path, {}, [rank_record(record, 0)])
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["meta"])
        f.attrs["meta"] = json.dumps({**meta, "rank": value})
    with pytest.raises(TraceError, match="meta.rank"):
        load_trace(path)


def test_the_estimate_counts_the_rank_files():
    data = load_data(DataSpec(subset=64, batch_size=64))
    reduced = estimate_traces([INFO], data, 10, 2, PHASES)
    ranked = estimate_traces([INFO], data, 10, 2, PHASES, ranks=True)
    assert reduced.files == 1 and ranked.files == 4
    assert ranked.initial == 4 * reduced.initial
    assert ranked.per_step == step_bytes(INFO, data, PHASES) + 3 * step_bytes(INFO, data, PHASES, 3)
    assert step_bytes(INFO, data, PHASES, 3) < step_bytes(INFO, data, PHASES)  # a third of the batch (rounded up)
    assert "4 files, 5 steps each" in ranked.describe()
    one = SideInfo("KerasLoop", {}, INFO.params, INFO.state, INFO.layers)
    assert estimate_traces([one], data, 10, 2, PHASES, ranks=True) == estimate_traces([one], data, 10, 2, PHASES)


def _weights(step: int, ok: bool, bitwise: bool) -> StepComparison:
    metrics = TensorMetrics(0.0 if bitwise else 1e-3, 0.0, 1.0, 1.0, 0, 0, 0, bitwise_equal=bitwise)
    return StepComparison(step, [TensorComparison(step, "weights", "w", "w", ok, metrics)], 0.0, 0.0)


def test_relations_and_the_weights_they_compare():
    a, b = RankMeta(0, 4, "MirroredStrategy", "r1", "o.h5"), RankMeta(1, 4, "MirroredStrategy", "r1", "o.h5")
    other = RankMeta(0, 4, "MirroredStrategy", "r2", "o.h5")
    assert relate(a, b).relation is Relation.SAME_RUN and relate(a, b).by_design
    assert relate(a, a).relation is Relation.SAME_RANK and not relate(a, a).by_design
    assert relate(a, other).relation is Relation.SAME_SLOT and not relate(a, other).by_design
    assert relate(b, other).relation is Relation.OTHER_SLOTS
    assert relate(a, None).relation is Relation.RANK_VS_WHOLE and relate(None, a, reduced=True).by_design
    assert relate(None, None).relation is Relation.NONE and relate(a, b).label("B") == \
        "rank 1 of 4 of a MirroredStrategy run"
    agree = weights_agreement([_weights(0, True, True), _weights(1, True, False)])
    assert (agree.steps, agree.bitwise, agree.first_apart) == (2, 1, None)
    apart = weights_agreement([_weights(0, True, True), _weights(1, False, False), _weights(2, False, False)])
    assert apart.first_apart == 1 and "differ from step 1" in apart.describe()


def test_diff_of_two_ranks_of_one_run_says_so(tmp_path):
    records = [_record(k, seed=k)[0] for k in range(2)]
    for r in (0, 1):
        _write(tmp_path / f"out.rank{r}.h5", _rank(r), [rank_record(rec, r) for rec in records])
    result = diff_traces(str(tmp_path / "out.rank0.h5"), str(tmp_path / "out.rank1.h5"))
    assert result.exit_code == 1 and result.first is not None and result.first.phase == "inputs"
    assert "rank 0 of 3" in result.config.setup_a and "rank 1 of 3" in result.config.setup_b
    assert result.diagnosis is not None and result.diagnosis.top is not None
    top = result.diagnosis.top
    assert top.cause == "ranks-of-one-run" and "by design" in top.title
    assert any("bitwise equal at every one of the 2" in e for e in top.evidence)
    assert any("two ranks of one run" in n and "(5 and 5 samples per step)" in n for n in result.notes)


def test_diff_of_ranks_whose_weights_part_says_they_are_out_of_sync(tmp_path):
    records = [_record(k, seed=k)[0] for k in range(2)]
    _write(tmp_path / "out.rank0.h5", _rank(0), [rank_record(rec, 0) for rec in records])
    late = [rank_record(rec, 1) for rec in records]
    late[1].tensors["weights"] = [(n, a + 1) for n, a in late[1].tensors["weights"]]
    _write(tmp_path / "out.rank1.h5", _rank(1), late)
    top = diff_traces(str(tmp_path / "out.rank0.h5"), str(tmp_path / "out.rank1.h5")).diagnosis.top
    assert top.cause == "ranks-out-of-sync" and any("differ from step 1" in e for e in top.evidence)


def test_diff_of_a_rank_and_its_reduced_trace(tmp_path):
    record, _, _ = _record()
    _write(tmp_path / "out.h5", {}, [record])
    _write(tmp_path / "out.rank2.h5", _rank(2), [rank_record(record, 2)])
    result = diff_traces(str(tmp_path / "out.rank2.h5"), str(tmp_path / "out.h5"))
    assert result.diagnosis.top.cause == "rank-vs-reduced"
    assert "rank 2 of 3" in result.config.setup_a and result.config.setup_b.endswith("(s.py)")
    _write(tmp_path / "elsewhere.h5", {}, [record])
    assert diff_traces(str(tmp_path / "out.rank2.h5"), str(tmp_path / "elsewhere.h5")).diagnosis.top.cause == \
        "rank-vs-whole"
