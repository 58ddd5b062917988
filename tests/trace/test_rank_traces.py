"""``xentdbg trace`` of a setup under MirroredStrategy writes one rank file per replica;
``xentdbg diff`` of two ranks, and of a rank against a one-device trace, says which
rank each is. Real TensorFlow, on 4 logical CPU devices (examples/distributed/model.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xentdbg.trace import load_trace

from conftest import EXAMPLES, run_cli, shared, words

MODEL = EXAMPLES / "distributed" / "model.py"
ARGS = ("--steps", "2", "--subset", "128")


@pytest.fixture(scope="module")
def rank_traces(session_tmp) -> dict[str, str]:
    """replicas4_bn (reduced trace and 4 rank files) and single_bn, traced once per session."""

    def record() -> dict[str, str]:
        folder = session_tmp / "ranks"
        folder.mkdir(exist_ok=True)
        runs = {}
        for name in ("replicas4_bn", "single_bn"):
            run = run_cli("trace", f"{MODEL}:{name}", "--out", str(folder / f"{name}.h5"), *ARGS,
                          tmp_path=session_tmp)
            assert run.code == 0, run.output
            runs[name] = run.stdout
        return {"folder": str(folder), **runs}

    return shared("tests/trace/test_rank_traces.py rank_traces", record, session_tmp)


@pytest.mark.slow
def test_rank_files_hold_each_replicas_view(rank_traces):
    folder = Path(rank_traces["folder"])
    assert "4 rank files, one per replica" in words(rank_traces["replicas4_bn"])
    assert "rank files" not in rank_traces["single_bn"]
    assert not list(folder.glob("single_bn.rank*"))
    ranks = [load_trace(folder / f"replicas4_bn.rank{r}.h5") for r in range(4)]
    with load_trace(folder / "replicas4_bn.h5") as reduced:
        assert reduced.rank is None
        for r, t in enumerate(ranks):
            assert t.rank is not None and (t.rank.rank, t.rank.world_size) == (r, 4)
            assert t.rank.strategy == "MirroredStrategy" and t.rank.reduced == "replicas4_bn.h5"
            assert t.rank.run == ranks[0].rank.run and t.steps == reduced.steps == [0, 1]
        for k in reduced.steps:
            whole = reduced.record(k, load=True)
            views = [t.record(k, load=True) for t in ranks]
            # inputs: the replicas' slices make up the global batch, in rank order
            for i, (name, x) in enumerate(whole.tensors["inputs"]):
                assert np.array_equal(np.concatenate([v.tensors["inputs"][i][1] for v in views]), x), name
            for i, (name, act) in enumerate(whole.tensors["activations"]):
                assert np.array_equal(np.concatenate([v.tensors["activations"][i][1] for v in views]), act), name
            # local gradients sum to the applied (reduced) ones within float32 rounding
            for i, (name, g) in enumerate(whole.tensors["gradients"]):
                total = sum(v.tensors["gradients"][i][1].astype(np.float64) for v in views)
                assert np.allclose(total, g, rtol=1e-5, atol=4 * 4 * np.finfo(np.float32).eps * np.abs(g).max()), name
            # each replica normalizes with its own samples: the moving_mean copies differ
            means = [dict(v.tensors["state"])["sequential/batch_normalization/moving_mean"] for v in views]
            assert all(not np.array_equal(means[0], m) for m in means[1:])
            assert np.array_equal(means[0], dict(whole.tensors["state"])["sequential/batch_normalization/moving_mean"])
            # the weights are synchronized: bitwise the same in every rank, and the reduced trace's
            for v in views:
                for (n1, w1), (n2, w2) in zip(v.tensors["weights"], whole.tensors["weights"], strict=True):
                    assert n1 == n2 and w1.tobytes() == w2.tobytes()
            slices = {v.digests["x"] for v in views}  # each rank's own slice, exactly
            assert len(slices) == 4 and whole.digests["x"] not in slices
    for t in ranks:
        t.close()


@pytest.mark.slow
def test_diff_of_two_ranks_says_same_run_different_slices(rank_traces, session_tmp):
    folder = Path(rank_traces["folder"])
    report = session_tmp / "ranks01.json"
    run = run_cli("diff", str(folder / "replicas4_bn.rank0.h5"), str(folder / "replicas4_bn.rank1.h5"),
                  "--json", str(report), tmp_path=session_tmp)
    assert run.code == 1, run.output  # their inputs do differ; the report says why
    text = words(run.stdout)
    assert "rank 0 of 4 of a MirroredStrategy run" in text and "rank 1 of 4 of a MirroredStrategy run" in text
    assert "two ranks of one run" in text and "different slices of each global batch" in text
    assert "by design" in text and "not a bug" in text and "Feed both sides the same batches" not in text
    d = json.loads(report.read_text())
    assert "rank 0 of 4" in d["a"]["setup"] and "rank 1 of 4" in d["b"]["setup"]
    top = d["diagnosis"]["findings"][0]
    assert top["cause"] == "ranks-of-one-run" and top["numbers"]["relation"] == "same-run"
    assert (top["numbers"]["a"]["rank"], top["numbers"]["b"]["rank"], top["numbers"]["a"]["world_size"]) == (0, 1, 4)
    assert top["numbers"]["weights_bitwise_steps"] == top["numbers"]["weights_steps"] == 2
    assert d["first_divergence"]["phase"] == "inputs"


@pytest.mark.slow
def test_diff_of_a_rank_against_a_single_device_trace(rank_traces, session_tmp):
    folder = Path(rank_traces["folder"])
    report = session_tmp / "rank0-single.json"
    run = run_cli("diff", str(folder / "replicas4_bn.rank0.h5"), str(folder / "single_bn.h5"),
                  "--json", str(report), tmp_path=session_tmp)
    assert run.code == 1, run.output
    text = words(run.stdout)
    assert "rank 0 of 4 of a MirroredStrategy run" in text and "(16 and 64 samples per step)" in text
    d = json.loads(report.read_text())
    top = d["diagnosis"]["findings"][0]
    assert top["cause"] == "rank-vs-whole" and top["numbers"]["b"] is None
    assert "of 4" not in d["b"]["setup"] and d["b"]["setup"].endswith(":single_bn)")


@pytest.mark.slow
def test_show_names_the_rank(rank_traces, session_tmp):
    run = run_cli("show", str(Path(rank_traces["folder"]) / "replicas4_bn.rank3.h5"), tmp_path=session_tmp)
    assert run.code == 0, run.output
    text = words(run.stdout)
    assert "rank 3 of 4 (MirroredStrategy)" in text and "reduced trace" in text
