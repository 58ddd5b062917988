"""Traces: record, read back bitwise, diff = compare, show, reports, --save-traces, --only/--every."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xentdbg.data import DataSpec
from xentdbg.records import SideInfo, StepRecord, TensorSpec
from xentdbg.trace import TraceWriter, load_trace

from conftest import CASE1, SETUPS, run_cli, shared

SMALL = str(SETUPS / "jax_small.py")
FAST = ["--steps", "4", "--subset", "64", "--batch-size", "16"]


def test_roundtrip_is_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    info = SideInfo("JaxLoop", {"jax": "x"}, [TensorSpec("w", (3, 2), "float32")], [TensorSpec("m", (2,), "float64")])
    records = []
    for k in range(3):
        records.append(StepRecord(k, {
            "inputs": [("x", rng.standard_normal(4)), ("y", rng.standard_normal(4))],
            "activations": [("dense", rng.standard_normal((4, 2)).astype(np.float16))],
            "loss": [("loss", np.float32(np.nan) if k == 2 else np.float32(k))],
            "gradients": [("w", np.array([[np.inf, -0.0], [1e-45, 2], [3, 4]], np.float32))],
            "state": [("m", rng.standard_normal(2))],
            "weights": [("w", rng.standard_normal((3, 2)).astype(np.float32))],
        }, flags={"bn": True, "drop": None}, digests={"x": "abc", "y": "def"}))
    initial = ([rng.standard_normal((3, 2)).astype(np.float32)], [np.zeros(2)])
    with TraceWriter(tmp_path / "t.h5", {"setup": "s.py"}, info, initial, compression="gzip") as w:
        for r in records:
            w.write(r)
    with load_trace(tmp_path / "t.h5") as t:
        assert t.steps == [0, 1, 2] and t.meta == {"setup": "s.py"} and t.info == info
        (p,), (m,) = t.initial()
        assert p.tobytes() == initial[0][0].tobytes() and m.tobytes() == initial[1][0].tobytes()
        for original, back in zip(records, t.records(load=True), strict=True):
            assert back.flags == original.flags and back.digests == original.digests
            for phase, tensors in original.tensors.items():
                for (n1, a1), (n2, a2) in zip(tensors, back.tensors[phase], strict=True):
                    a1 = np.asarray(a1)
                    assert n1 == n2 and a1.dtype == a2.dtype and a1.shape == a2.shape
                    assert a1.tobytes() == a2.tobytes()


@pytest.fixture(scope="module")
def case1_traces(session_tmp):
    """Two traces, written once per session (also under xdist: ``conftest.shared``; the
    other workers read the files where the first one wrote them)."""

    def record() -> list[str]:
        keras = session_tmp / "keras.h5"
        jax = session_tmp / "jax.h5"
        r1 = run_cli("trace", str(CASE1 / "keras_fit.py"), "--out", str(keras), "--steps", "4", tmp_path=session_tmp)
        r2 = run_cli("trace", str(CASE1 / "jax_stable.py"), "--out", str(jax), "--steps", "4", "--init-from",
                     str(keras), tmp_path=session_tmp)
        assert r1.code == 0 and r2.code == 0, r1.output + r2.output
        return [str(keras), str(jax)]

    keras, jax = shared("tests/trace/test_traces.py case1_traces", record, session_tmp)
    return Path(keras), Path(jax)


@pytest.mark.slow
def test_diff_of_traces_equals_compare_of_setups(case1_traces, session_tmp):
    keras, jax = case1_traces
    diff_json = session_tmp / "diff.json"
    diff = run_cli("diff", str(keras), str(jax), "--json", str(diff_json), "--markdown", str(session_tmp / "r.md"),
                   "--svg", str(session_tmp / "r.svg"), tmp_path=session_tmp)
    compare = run_cli("compare", str(CASE1 / "keras_fit.py"), str(CASE1 / "jax_stable.py"), "--steps", "4",
                      tmp_path=session_tmp)
    assert diff.code == compare.code == 1, diff.output
    d = json.loads(diff_json.read_text())
    assert d["first_divergence"] == compare.report["first_divergence"]
    assert d["first_divergence"]["phase"] == "loss" and d["first_divergence"]["step"] == 0
    # diff has no setups to re-run: it compares no updates (so the per-step divergent-tensor
    # counts differ by the update tensors) and cross-feeds nothing; everything else is the same
    def steps(report):
        return [{k: v for k, v in s.items() if k not in ("divergent_tensors", "crossfeed")}
                for s in report["per_step"]]

    assert steps(d) == steps(compare.report)
    md = (session_tmp / "r.md").read_text()
    assert "## Environment" in md and "## Reproduce" in md and "xentdbg trace" in md and "xentdbg diff" in md
    assert "First divergence: step 0 · loss · loss" in md and "## Per step" in md
    assert (session_tmp / "r.svg").read_text().startswith("<svg")


@pytest.mark.slow
def test_show_lists_tensors_and_loss(case1_traces, session_tmp):
    keras, _ = case1_traces
    run = run_cli("show", str(keras), tmp_path=session_tmp)
    assert run.code == 0, run.output
    for text in ("KerasFit", "4 complete of 4", "sequential/dense/kernel", "(784, 1000)", "float32", "loss  "):
        assert text in run.stdout


@pytest.mark.slow
def test_compare_save_traces_and_markdown(session_tmp):
    folder = session_tmp / "saved"
    md = session_tmp / "compare.md"
    run = run_cli("compare", SMALL, f"{SMALL}:other_seed", *FAST, "--init", "own", "--save-traces", str(folder),
                  "--markdown", str(md), tmp_path=session_tmp)
    assert run.code == 1
    with load_trace(folder / "a.h5") as a, load_trace(folder / "b.h5") as b:
        assert a.steps == b.steps == [0, 1, 2, 3]
        assert a.meta["setup"].endswith("jax_small.py:setup") and b.meta["setup"].endswith(":other_seed")
    assert "xentdbg compare" in md.read_text() and "--init own" in md.read_text()
    again = run_cli("diff", str(folder / "a.h5"), str(folder / "b.h5"), tmp_path=session_tmp)
    assert again.code == 1


@pytest.mark.slow
def test_saved_traces_hold_both_cross_fed_views_and_the_float64_reruns(session_tmp):
    # label smoothing on B: step 0 is flagged, re-run cross-fed and (a small difference) in float64
    verdicts = str(SETUPS / "jax_verdicts.py")
    folder = session_tmp / "crossfed"
    run = run_cli("compare", f"{verdicts}:base", f"{verdicts}:smoothed", "--subset", "200", "--batch-size", "100",
                  "--steps", "2", "--pixels", "unit", "--save-traces", str(folder), tmp_path=session_tmp)
    assert run.code == 1, run.output
    with load_trace(folder / "a.h5") as a, load_trace(folder / "b.h5") as b:
        verdict = a.verdict(0)
        assert verdict == b.verdict(0) and verdict is not None and not verdict["inherited"]
        assert verdict["float64"]["ran"] and not verdict["float64"]["rounding"]
        for trace in (a, b):
            fed, wide = trace.rerun(0, "crossfed", load=True), trace.rerun(0, "float64", load=True)
            assert fed is not None and wide is not None
            assert [n for n, _ in fed.tensors["gradients"]] == [n for n, _ in trace.record(0).tensors["gradients"]]
            assert all(g.dtype == np.float64 for _, g in wide.tensors["gradients"])
        # view A by hand: A's record against B re-run from A's values; B's loss differs (smoothing)
        assert a.record(0, load=True).tensors["loss"][0][1] != b.rerun(0, "crossfed", load=True).tensors["loss"][0][1]
        assert a.rerun(1, "crossfed") is None or a.verdict(1) is not None


@pytest.mark.slow
def test_only_and_every(session_tmp):
    out = session_tmp / "thin.h5"
    run = run_cli("trace", SMALL, "--out", str(out), *FAST, "--only", "loss,gradients", "--every", "2",
                  tmp_path=session_tmp)
    assert run.code == 0, run.output
    with load_trace(out) as t:
        assert t.steps == [0, 2]
        assert set(t.record(0).tensors) == {"loss", "gradients"}
        assert t.meta["every"] == 2


@pytest.mark.slow
def test_bad_trace_options(session_tmp):
    run = run_cli("trace", SMALL, "--out", str(session_tmp / "x.h5"), "--only", "loss,bogus", tmp_path=session_tmp)
    assert run.code == 2 and "--only bogus: unknown phase" in run.stderr
    run = run_cli("trace", SMALL, "--out", str(session_tmp / "x.h5"), "--init-from", str(session_tmp / "none.h5"),
                  *FAST, tmp_path=session_tmp)
    assert run.code == 2 and "no such file" in run.stderr


@pytest.mark.slow
def test_init_from_a_mismatched_trace_shows_both_tables(case1_traces, session_tmp):
    keras, _ = case1_traces
    run = run_cli("trace", SMALL, "--out", str(session_tmp / "y.h5"), *FAST, "--init-from", str(keras),
                  tmp_path=session_tmp)
    assert run.code == 2
    assert "trace name" in run.stderr and "setup name" in run.stderr and "see below" in run.stderr


def _synthetic(path, steps: int, mb_per_tensor: int = 2, tensors: int = 4):
    n = mb_per_tensor * (1 << 20) // 4
    info = SideInfo("JaxLoop", {}, [TensorSpec(f"w{i}", (n,), "float32") for i in range(tensors)], [])
    rng = np.random.default_rng(0)
    base = [rng.standard_normal(n).astype(np.float32) for _ in range(tensors)]
    with TraceWriter(path, {"setup": "synthetic", "data": DataSpec().to_dict()}, info, (base, [])) as w:
        for k in range(steps):
            w.write(StepRecord(k, {"loss": [("loss", np.float32(k))],
                                   "weights": [(f"w{i}", b + np.float32(k)) for i, b in enumerate(base)]}))


def _peak_rss_mb(args, tmp_path) -> float:
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "xentdbg", *args],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.slow
def test_diff_memory_does_not_grow_with_trace_length(tmp_path):
    """8 MB per step: a 40-step pair is 640 MB on disk; diff's peak RSS stays that of a 2-step pair."""
    for steps in (2, 40):
        _synthetic(tmp_path / f"a{steps}.h5", steps)
        _synthetic(tmp_path / f"b{steps}.h5", steps)
    short = _peak_rss_mb(["diff", str(tmp_path / "a2.h5"), str(tmp_path / "b2.h5")], tmp_path)
    long = _peak_rss_mb(["diff", str(tmp_path / "a40.h5"), str(tmp_path / "b40.h5")], tmp_path)
    assert long < short + 40, (short, long)
