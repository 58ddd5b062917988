"""Robustness: killed writers, Ctrl-C, hostile trace files. Each ends in a clear message, never a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from xentdbg.records import SideInfo, StepRecord, TensorSpec
from xentdbg.trace import TraceWriter, load_trace

from conftest import ROOT, SETUPS, run_cli, workers_of

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

SLOW = f"{SETUPS / 'jax_small.py'}:slow"
SMALL_ARGS = ["--subset", "64", "--batch-size", "16"]


def _start(args: list[str], marker: str, progress: Path) -> subprocess.Popen:
    progress.mkdir()
    env = {**os.environ, "XENTDBG_TEST_MARKER": marker,  # inherited by the workers, to find them
           "XENTDBG_TEST_PROGRESS": str(progress)}  # where SLOW's workers count their steps
    return subprocess.Popen([sys.executable, "-m", "xentdbg", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(proc: subprocess.Popen, progress: Path, steps: int, timeout: float = 240) -> None:
    """Until a worker of ``proc`` has started step ``steps`` (SLOW counts one loss call per
    step; nothing here cross-feeds, which would add calls). Waits on progress, not on a
    guessed time: JAX may take anything to start on a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        counts = [len(f.read_text().splitlines()) for f in progress.iterdir()]
        if counts and max(counts) > steps:
            return
        time.sleep(0.05)
    raise AssertionError(f"no worker started step {steps} within {timeout:g} s (exit code {proc.poll()})")


def _wait_for_workers_to_go(marker: str, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and workers_of(marker):
        time.sleep(0.2)
    return workers_of(marker)


def test_killed_writer_leaves_a_readable_trace(tmp_path):
    out = tmp_path / "killed.h5"
    proc = _start(["trace", SLOW, "--out", str(out), "--steps", "500", *SMALL_ARGS], "killed-writer",
                  tmp_path / "progress")
    # The worker starts step k+1 only after the writer wrote and flushed step k: with step 5
    # started, steps 0-4 are on disk.
    _wait_for_steps(proc, tmp_path / "progress", 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with load_trace(out) as t:
        assert 3 <= len(t.steps) < 500
        assert t.steps == list(range(len(t.steps)))
        for record in t.records(load=True):
            assert np.isfinite(record.loss)
    assert _wait_for_workers_to_go("killed-writer") == []  # the worker sees its pipe close and exits


@pytest.mark.parametrize("command", ["trace", "compare"])
def test_ctrl_c_stops_workers_and_leaves_readable_traces(tmp_path, command):
    marker = f"ctrl-c-{command}"
    if command == "trace":
        args = ["trace", SLOW, "--out", str(tmp_path / "t.h5"), "--steps", "500", *SMALL_ARGS]
        traces = [tmp_path / "t.h5"]
    else:
        args = ["compare", SLOW, SLOW, "--steps", "500", *SMALL_ARGS, "--save-traces", str(tmp_path)]
        traces = [tmp_path / "a.h5", tmp_path / "b.h5"]
    proc = _start(args, marker, tmp_path / "progress")
    # compare lets a worker run one step ahead of the traces: a worker in step 5 means the
    # coordinator received step 4 and so wrote steps 0-3; trace, steps 0-4.
    _wait_for_steps(proc, tmp_path / "progress", 5)
    assert workers_of(marker), proc.stderr
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _wait_for_workers_to_go(marker) == []
    for path in traces:  # every time: the writer holds Ctrl-C back until the step it writes is complete
        with load_trace(path) as t:
            assert len(t.steps) >= 3 and t.steps == list(range(len(t.steps)))
            for record in t.records(load=True):
                assert np.isfinite(record.loss)


# -- hostile and broken files --------------------------------------------------------

def _valid(path: Path) -> Path:
    info = SideInfo("JaxLoop", {}, [TensorSpec("w", (2, 2), "float32")], [])
    rec = StepRecord(0, {"loss": [("loss", np.float32(1))], "gradients": [("w", np.ones((2, 2), np.float32))]})
    with TraceWriter(path, {"setup": "x.py"}, info, ([np.zeros((2, 2), np.float32)], [])) as w:
        w.write(rec)
    return path


def _mutate(tmp_path: Path, change) -> Path:
    path = _valid(tmp_path / "t.h5")
    with h5py.File(path, "a") as f:
        change(f, tmp_path)
    return path


def _external_link(f, tmp):
    _valid(tmp / "other.h5")
    f["steps/00000000/gradients/000001"] = h5py.ExternalLink(str(tmp / "other.h5"), "/initial/params/000000")


def _virtual(f, tmp):
    layout = h5py.VirtualLayout(shape=(2, 2), dtype="float32")
    layout[:] = h5py.VirtualSource("/etc/passwd-like.h5", "data", shape=(2, 2))
    del f["steps/00000000/gradients/000000"]
    ds = f["steps/00000000/gradients"].create_virtual_dataset("000000", layout, fillvalue=0)
    ds.attrs["name"] = "w"


def _external_storage(f, tmp):
    (tmp / "raw.bin").write_bytes(b"\0" * 16)
    del f["steps/00000000/gradients/000000"]
    ds = f["steps/00000000/gradients"].create_dataset("000000", shape=(2, 2), dtype="float32",
                                                      external=[(str(tmp / "raw.bin"), 0, 16)])
    ds.attrs["name"] = "w"


def _replace(data_kwargs):
    def change(f, tmp):
        del f["steps/00000000/gradients/000000"]
        ds = f["steps/00000000/gradients"].create_dataset("000000", **data_kwargs)
        ds.attrs["name"] = "w"
    return change


HOSTILE = {
    "wrong format version": (lambda f, t: f.attrs.__setitem__("format_version", 99), "format version 99"),
    "missing format version": (lambda f, t: f.attrs.__delitem__("format_version"), "no format version"),
    "no format marker": (lambda f, t: f.attrs.__delitem__("format"), "no xentdbg format marker"),
    "missing group": (lambda f, t: f.__delitem__("steps"), "group /steps is missing"),
    "mismatched shape": (_replace({"data": np.ones((3, 2), np.float32)}), "the parameter table says (2, 2)"),
    "object dtype": (_replace({"data": np.array(["a", "b"], dtype=h5py.string_dtype())}), "only numeric tensors"),
    "vlen dtype": (_replace({"shape": (2,), "dtype": h5py.vlen_dtype(np.float32)}), "only numeric tensors"),
    "huge shape": (_replace({"shape": (10**7, 10**7), "dtype": "float32", "chunks": (1, 1)}), "declares shape"),
    "external link": (_external_link, "external link"),
    "virtual dataset": (_virtual, "virtual dataset"),
    "external storage": (_external_storage, "external files"),
    "meta not JSON": (lambda f, t: f.attrs.__setitem__("meta", "{not json"), "is not JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_trace_is_refused_with_exit_2(tmp_path, case):
    change, message = HOSTILE[case]
    path = _mutate(tmp_path, change)
    for args in (["show", str(path)], ["diff", str(path), str(path)]):
        run = run_cli(*args, tmp_path=tmp_path)
        assert run.code == 2, (case, run.output)
        assert message in " ".join(run.stderr.split()), (case, run.stderr)
        assert "Traceback" not in run.output


def test_not_hdf5_and_truncated(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    run = run_cli("show", str(text), tmp_path=tmp_path)
    assert run.code == 2 and "HDF5 cannot open it" in run.stderr
    good = _valid(tmp_path / "good.h5")
    cut = tmp_path / "cut.h5"
    shutil.copy(good, cut)
    with open(cut, "r+b") as f:
        f.truncate(good.stat().st_size // 2)
    run = run_cli("show", str(cut), tmp_path=tmp_path)
    assert run.code == 2 and "not a usable xentdbg trace" in run.stderr and "Traceback" not in run.output


def test_cli_on_hostile_files_exits_2_without_traceback(tmp_path):
    """A few classes of bench/hostile_traces.py through the real CLI (the rest run in process,
    test_trace_schema.py): a cycle, a memory bomb, a chunk that fails when read."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_traces", ROOT / "bench" / "hostile_traces.py")
    assert spec is not None and spec.loader is not None
    hostile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hostile)
    good = hostile.valid(tmp_path / "good.h5", seed=1)
    for name in ("cycle to root", "6 GiB unwritten activation", "corrupt gzip chunk"):
        path = tmp_path / f"{name.replace(' ', '_')}.h5"
        hostile.CLASSES[name][0](path)
        for args in (["show", str(path)], ["diff", str(path), str(good)]):
            run = run_cli(*args, tmp_path=tmp_path, process=True, timeout=30)
            assert run.code == 2, (name, args[0], run.output)
            assert "not a usable xentdbg trace" in run.stderr and "Traceback" not in run.output, (name, run.output)
    cut_short = tmp_path / "cut_short.h5"
    hostile.CLASSES["interrupted step without name"][0](cut_short)
    run = run_cli("show", str(cut_short), tmp_path=tmp_path, process=True, timeout=30)
    assert run.code == 0 and f"{hostile.STEPS} complete of {hostile.STEPS}" in run.stdout, run.output
