"""Outputs are checked before anything runs (exit 2 in a second, never 70 after the run),
the checks leave the user's files as they were, and a report that fails to be written at
the end anyway keeps the verdict in the message (exit 2). In-process, no framework."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xentdbg.cli import app
from xentdbg.paths import describe_not_file, folder_problem, output_problem
from xentdbg.records import SideInfo, StepRecord, TensorSpec
from xentdbg.trace import TraceWriter

from conftest import SETUPS

SMALL = str(SETUPS / "jax_small.py")
LINUX_PROC = Path("/proc/self/mountinfo").exists()


def cli(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "1000"})  # rich must not wrap long paths
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps at the terminal's width


@pytest.fixture
def places(tmp_path):
    """A folder, a FIFO, a file with content, a broken link."""
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "kept.json").write_text("user data\n")
    os.symlink(tmp_path / "gone", tmp_path / "broken")
    return tmp_path


# -- the checks themselves ----------------------------------------------------------------

def test_output_problems_say_what_is_wrong(places):
    assert output_problem(str(places / "new.json")) is None
    assert output_problem(str(places / "kept.json")) is None
    assert output_problem(str(places / "missing" / "r.json")) == f"its folder {places / 'missing'} does not exist"
    assert output_problem(str(places / "folder")) == "is a directory"
    assert output_problem(str(places / "fifo")) == "is a FIFO, not a regular file"
    assert output_problem(str(places / "broken")) == "is a broken symbolic link"
    assert output_problem(str(places / "kept.json" / "r.json")).endswith(f"{places / 'kept.json'} is not a directory")
    assert output_problem("/dev/null") is None  # a character device is fine


@pytest.mark.skipif(not LINUX_PROC, reason="Linux /proc")
def test_pseudo_filesystems_are_refused_even_for_root():
    for path in ("/proc/report.json", "/proc/version", "/proc/sys/kernel/hostname"):
        assert "proc filesystem" in output_problem(path), path
    assert "proc filesystem" in folder_problem("/proc/traces")


def test_checks_leave_files_as_they_were(places):
    kept = places / "kept.json"
    os.utime(kept, (1_000_000_000, 1_000_000_000))
    before = kept.stat()
    assert output_problem(str(kept)) is None
    after = kept.stat()
    assert kept.read_text() == "user data\n" and after.st_mtime == before.st_mtime and after.st_size == before.st_size
    assert output_problem(str(places / "new.json")) is None and not (places / "new.json").exists()
    assert folder_problem(str(places / "a" / "b" / "traces")) is None and not (places / "a").exists()
    assert sorted(p.name for p in places.iterdir()) == ["broken", "fifo", "folder", "kept.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_without_write_permission(places):
    locked = places / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert "cannot be created" in output_problem(str(locked / "r.json"))
        assert "cannot be created" in folder_problem(str(locked / "traces"))
    finally:
        locked.chmod(stat.S_IRWXU)


def test_save_traces_folder_problems(places):
    assert folder_problem(str(places / "kept.json")) == "exists and is not a directory"
    assert folder_problem(str(places / "kept.json" / "sub")).endswith(f"{places / 'kept.json'} is not a directory")
    assert folder_problem(str(places / "folder")) is None


def test_describe_not_file(places):
    assert describe_not_file(places / "folder") == "is a directory"
    assert describe_not_file(places / "fifo") == "is a FIFO, not a regular file"
    assert describe_not_file(places / "nothing.h5") == "no such file"
    assert describe_not_file(places / "broken") == "is a broken symbolic link"


# -- the commands: exit 2 before any worker starts ----------------------------------------

@pytest.mark.parametrize("option,target,message", [
    ("--json", "missing/r.json", "--json {t}/missing/r.json: its folder {t}/missing does not exist."),
    ("--markdown", "folder", "--markdown {t}/folder: is a directory."),
    ("--svg", "fifo", "--svg {t}/fifo: is a FIFO, not a regular file."),
    ("--save-traces", "kept.json", "--save-traces {t}/kept.json: exists and is not a directory (it names a folder, "
                                   "to hold a.h5 and b.h5)."),
])
def test_compare_refuses_unwritable_outputs_before_running(places, option, target, message):
    # the setups do not exist either: the outputs are checked first, in a fraction of a second
    result = cli("compare", "nope_a.py", "nope_b.py", option, str(places / target))
    assert result.exit_code == 2, result.output
    assert message.format(t=places) in one_line(result.output) and "Nothing was run" in result.output
    assert (places / "kept.json").read_text() == "user data\n"


def test_compare_names_every_bad_output_at_once(places):
    result = cli("compare", "a.py", "b.py", "--json", str(places / "folder"), "--svg", str(places / "no" / "r.svg"))
    out = one_line(result.output)
    assert result.exit_code == 2 and "--json" in out and "--svg" in out and "Outputs that cannot be written" in out


@pytest.mark.skipif(not LINUX_PROC, reason="Linux /proc")
def test_compare_refuses_proc(places):
    result = cli("compare", "a.py", "b.py", "--json", "/proc/r.json")
    assert result.exit_code == 2 and "proc filesystem" in result.output


@pytest.mark.parametrize("value", ["inf", "1e999", "1e10"])  # nan and -inf: typer refuses them (min=0.1)
def test_an_endless_step_timeout_is_a_usage_error(value):
    """select() refuses ~1e10 s and more, poll() more than 24.8 days: a crash after loading, before."""
    for command in (["compare", SMALL, SMALL], ["trace", SMALL, "--out", "x.h5"]):
        result = cli(*command, "--step-timeout", value)
        assert result.exit_code == 2, result.output
        assert "give at most 1e+06 seconds" in result.output and "no time limit" in result.output
    result = cli("loss", "cce", "--y-pred", "saturated", "--timeout", value)
    assert result.exit_code == 2 and "--timeout" in result.output


def test_infinite_tolerance_is_a_usage_error():
    result = cli("compare", SMALL, SMALL, "--rtol", "inf")
    assert result.exit_code == 2 and "--rtol inf: give a finite number" in result.output


def test_trace_refuses_unwritable_out_and_odd_init_from(places):
    result = cli("trace", SMALL, "--out", str(places / "no" / "t.h5"))
    assert result.exit_code == 2 and "--out" in result.output and "does not exist" in one_line(result.output)
    result = cli("trace", SMALL, "--out", str(places / "t.h5"), "--init-from", str(places / "folder"))
    assert result.exit_code == 2 and "--init-from" in result.output and "is a directory" in one_line(result.output)


@pytest.mark.parametrize("kind,message", [("folder", "is a directory"), ("fifo", "is a FIFO, not a regular file")])
def test_setup_path_that_is_not_a_file(places, kind, message):
    odd = places / f"{kind}.py"
    (odd.mkdir() if kind == "folder" else os.mkfifo(odd))
    result = cli("compare", str(odd), SMALL)
    assert result.exit_code == 2, result.output
    assert f"Setup file {odd} {message}." in one_line(result.output)


@pytest.mark.parametrize("kind,message", [("folder", "is a directory"), ("fifo", "is a FIFO, not a regular file")])
def test_trace_path_that_is_not_a_file(places, kind, message):
    result = cli("show", str(places / kind))
    assert result.exit_code == 2 and message in one_line(result.output)
    result = cli("diff", str(places / "kept.json"), str(places / kind))
    assert result.exit_code == 2 and f"trace B {places / kind}: {message}." in one_line(result.output)


# -- a report that fails at the end keeps the verdict ---------------------------------------

def _trace(path: Path, loss: float) -> Path:
    info = SideInfo("JaxLoop", {}, [TensorSpec("w", (2, 2), "float32")], [])
    record = StepRecord(0, {"loss": [("loss", np.float32(loss))],
                            "gradients": [("w", np.full((2, 2), loss, np.float32))]})
    with TraceWriter(path, {"setup": "x.py"}, info, ([np.zeros((2, 2), np.float32)], [])) as w:
        w.write(record)
    return path


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("loss_b,verdict", [(1.0, 0), (2.0, 1)])
def test_a_report_that_cannot_be_written_at_the_end(tmp_path, loss_b, verdict):
    """/dev/full passes the checks (a character device) and fails the write (ENOSPC), as a
    full disk would: the other reports are written, the message names the verdict, exit 2."""
    a, b = _trace(tmp_path / "a.h5", 1.0), _trace(tmp_path / "b.h5", loss_b)
    report = tmp_path / "r.json"
    result = cli("diff", str(a), str(b), "--markdown", "/dev/full", "--json", str(report))
    out = one_line(result.output)
    assert result.exit_code == 2, result.output
    assert "--markdown /dev/full: not written (No space left on device)." in out
    assert f"it would have exited {verdict}" in out
    assert json.loads(report.read_text())["exit_code"] == verdict


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_loss_report_that_cannot_be_written():
    result = cli("loss", "cce", "--y-pred", "saturated", "--only", "reference", "--json", "/dev/full")
    assert result.exit_code == 2, result.output
    assert "not written" in result.output and "would have exited 0 (evaluated)" in one_line(result.output)


def test_an_error_with_an_unwritable_json_is_reported_once(places):
    result = cli("compare", "a.py", "b.py", "--task", "regression", "--json", str(places / "folder"))
    assert result.exit_code == 2 and "--task 'regression'" in result.output


# -- no output overwrites what the command reads ---------------------------------------------

def test_an_output_onto_an_input_is_refused_and_the_input_kept(tmp_path):
    a, b = _trace(tmp_path / "a.h5", 1.0), _trace(tmp_path / "b.h5", 1.0)
    before = b.read_bytes()
    result = cli("diff", str(a), str(b), "--json", str(b))
    assert result.exit_code == 2 and f"--json {b} is trace B: it would be overwritten." in one_line(result.output)
    assert b.read_bytes() == before  # not even the error went to --json
    setup = tmp_path / "setup.py"
    setup.write_text("def setup(data): ...\n")
    result = cli("compare", f"{setup}:setup", SMALL, "--svg", str(setup))
    assert result.exit_code == 2 and "is setup A" in one_line(result.output)
    result = cli("trace", str(setup), "--out", str(a), "--init-from", str(a))
    assert result.exit_code == 2 and "is --init-from" in one_line(result.output)
    assert setup.read_text() == "def setup(data): ...\n" and a.read_bytes()[:4] == b"\x89HDF"


def test_two_outputs_naming_one_file(tmp_path):
    result = cli("compare", "a.py", "b.py", "--save-traces", str(tmp_path), "--json", str(tmp_path / "a.h5"))
    assert result.exit_code == 2 and "--json and --save-traces name the same file" in one_line(result.output)
    assert list(tmp_path.iterdir()) == []
