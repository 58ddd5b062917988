"""The trace layout check (xentdbg/trace/schema.py) and the writer's crash safety, in process:
every hostile class of bench/hostile_traces.py is refused with its reason (or read, where the
format allows it), through load_trace, every record, show's rendering and diff."""

from __future__ import annotations

import io
import os
import signal
import threading

import h5py
import numpy as np
import pytest
from rich.console import Console

from xentdbg.errors import UsageError
from xentdbg.records import StepRecord
from xentdbg.report.trace_view import blocks, render_trace, summary
from xentdbg.trace import load_trace, schema
from xentdbg.trace.diff import diff_traces
from xentdbg.trace.reader import LazyTensor, TraceError
from xentdbg.trace.writer import TraceWriter, signals_held

from conftest import bench_module


def _hostile():
    return bench_module("hostile_traces")


H = _hostile()


def use_everything(path, other) -> None:
    """What load_trace, show and diff read of a trace: every record, re-run, verdict, the
    initial tensors, show's rendering, and a diff against ``other``."""
    with load_trace(path) as t:
        t.initial()
        for k in t.steps:
            t.record(k, load=True)
            t.verdict(k)
            for kind in ("crossfed", "float64"):
                t.rerun(k, kind, load=True)
        render_trace(t, Console(file=io.StringIO(), width=120))
    diff_traces(str(path), str(other))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return H.valid(tmp_path_factory.mktemp("good") / "good.h5", seed=1)


@pytest.mark.parametrize("name", list(H.CLASSES))
def test_hostile_class(tmp_path, good, name):
    build, reason = H.CLASSES[name]
    path = tmp_path / "t.h5"
    build(path)
    if name == "bit flips":  # refused or read, never anything else
        try:
            use_everything(path, good)
        except TraceError:
            pass
        return
    if reason is None:
        use_everything(path, good)
        return
    with pytest.raises(TraceError) as refused:
        use_everything(path, good)
    assert reason in str(refused.value), str(refused.value)
    assert "not a usable xentdbg trace" in str(refused.value) and refused.value.exit_code == 2


def test_valid_trace_reads_back_reruns_verdict_and_loss(tmp_path):
    path = H.valid(tmp_path / "t.h5")
    with load_trace(path) as t:
        assert t.steps == list(range(H.STEPS))
        assert t.verdict(1) == {"inherited": False} and t.verdict(0) is None
        assert t.rerun(0, "crossfed") is None
        fed = t.rerun(1, "crossfed", load=True)
        assert fed is not None and [n for n, _ in fed.tensors["gradients"]] == ["w", "b"]
        assert t.loss(1) == pytest.approx(0.5)
        lazy = t.record(2).tensors["activations"][0][1]
        assert isinstance(lazy, LazyTensor) and lazy.shape == (16, 64) and lazy.dtype == np.float32
        assert np.asarray(lazy).shape == (16, 64) and lazy[:2].shape == (2, 64)
        with pytest.raises(TraceError, match="step 9 is not in the trace"):
            t.record(9)
        with pytest.raises(TraceError, match="unknown re-run kind"):
            t.rerun(1, "bogus")


def test_half_written_rerun_and_interrupted_step_are_ignored(tmp_path):
    path = H.valid(tmp_path / "t.h5")
    with h5py.File(path, "a") as f:
        H._half_rerun(f)
        H._interrupted_step(f)
        del f["steps/00000001/float64"].attrs["complete"]  # an older writer's re-run: no mark, ignored
    with load_trace(path) as t:
        assert t.steps == list(range(H.STEPS))
        assert t.rerun(0, "crossfed") is None and t.rerun(1, "float64") is None
        assert t.rerun(1, "crossfed") is not None


def test_file_budget(tmp_path, monkeypatch):
    path = H.valid(tmp_path / "t.h5")
    monkeypatch.setattr(schema, "MAX_FILE_DECLARED_BYTES", 1000)
    with pytest.raises(TraceError, match="its tensors declare .* in all"):
        load_trace(path)


def test_a_file_reading_fails_on_later_is_a_trace_error(tmp_path):
    path = tmp_path / "t.h5"
    H._corrupt_chunk(path)
    with load_trace(path) as t:  # the layout is fine; the damaged chunk shows when it is read
        lazy = t.record(H.STEPS - 1).tensors["activations"][0][1]
        with pytest.raises(TraceError, match="reading /steps/00000002/activations/000000 failed"):
            np.asarray(lazy)
        with pytest.raises(TraceError):
            render_trace(t, Console(file=io.StringIO()))


def test_blocked_summary_equals_the_whole_one():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5, 3)).astype(np.float32)
    a[2, 1, 0], a[6, 4, 2] = np.nan, np.inf
    whole, blocked = summary(a), summary(a, limit=16)
    assert len(list(blocks(a.shape, 4, 16))) > 7
    assert (blocked.shape, blocked.dtype, blocked.nonfinite) == (whole.shape, whole.dtype, whole.nonfinite)
    for key in ("min", "max", "norm", "mean", "std"):
        assert getattr(blocked, key) == pytest.approx(getattr(whole, key), rel=1e-6)
    covered = np.zeros(a.shape, int)
    for index in blocks(a.shape, 4, 16):
        covered[index] += 1
    assert (covered == 1).all()


def test_signals_held_defer_ctrl_c_to_the_end_of_the_block():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signals_held_in_another_thread_block_them():
    seen = []

    def body():
        with signals_held():
            seen.append(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
        seen.append(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [True, False]


class _Interrupting:
    """An array that sends SIGINT to this process while the writer converts it: Ctrl-C in the
    middle of a step's write."""

    def __array__(self, dtype=None, copy=None):
        os.kill(os.getpid(), signal.SIGINT)
        return np.ones(3, np.float32)


def test_ctrl_c_inside_a_step_write_completes_the_step(tmp_path):
    path = H.valid(tmp_path / "t.h5")
    with load_trace(path) as t:
        info, meta = t.info, t.meta
        initial = t.initial()
    out = tmp_path / "interrupted.h5"
    writer = TraceWriter(out, meta, info, initial)
    with pytest.raises(KeyboardInterrupt):
        writer.write(StepRecord(0, {"loss": [("loss", np.float32(1))],
                                    "state": [("m", _Interrupting())]}, {}, {}))
    with pytest.raises(KeyboardInterrupt):
        writer.write_rerun(0, "crossfed", {"loss": [("loss", np.float32(1))], "state": [("m", _Interrupting())]})
    writer.close()
    with load_trace(out) as t:
        assert t.steps == [0] and t.record(0, load=True).tensors["state"][0][1].tolist() == [1, 1, 1]
        assert t.rerun(0, "crossfed") is not None


def test_load_trace_raises_only_trace_errors_for_a_missing_file(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "none.h5")
    assert issubclass(TraceError, UsageError)
