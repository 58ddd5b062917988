"""Bad input gets a clear message and the right exit code, never a Python traceback of ours."""

from __future__ import annotations

import pytest

from conftest import SETUPS, run_cli

SMALL = str(SETUPS / "jax_small.py")
FAST = ["--steps", "4", "--subset", "64", "--batch-size", "16"]


def no_internal_traceback(run):
    # A setup's own traceback is shown (labelled); xentdbg's never is.
    assert "xentdbg/cli.py" not in run.output and "xentdbg/replay/engine.py" not in run.output


@pytest.mark.slow
def test_missing_setup_file(session_tmp):
    run = run_cli("compare", "nope/missing.py", SMALL, *FAST, tmp_path=session_tmp)
    assert run.code == 2
    assert "Setup file nope/missing.py does not exist" in run.stderr
    assert run.report["exit_code"] == 2
    no_internal_traceback(run)


@pytest.mark.slow
def test_missing_function_lists_what_is_there(session_tmp):
    run = run_cli("compare", f"{SMALL}:nosuch", SMALL, *FAST, tmp_path=session_tmp)
    assert run.code == 2
    assert "has no function 'nosuch'" in run.stderr and "raises_at_step_2" in run.stderr
    no_internal_traceback(run)


@pytest.mark.slow
def test_setup_returning_wrong_type(session_tmp):
    run = run_cli("compare", f"{SMALL}:returns_nonsense", SMALL, *FAST, tmp_path=session_tmp)
    assert run.code == 2 and "returned a str" in run.stderr


@pytest.mark.slow
def test_mismatched_architectures_show_both_tables(session_tmp):
    run = run_cli("compare", SMALL, f"{SMALL}:wide", *FAST, tmp_path=session_tmp)
    assert run.code == 2
    out = " ".join(run.stderr.split())  # the report wraps at the terminal's width
    assert "cannot be paired by layer, role and shape" in out and "--pair FILE" in out
    assert "A name" in out and "B name" in out and "see below" in out and "unpaired: A" in out
    assert "(784, 16)" in out and "(784, 32)" in out
    no_internal_traceback(run)


@pytest.mark.slow
def test_setup_raising_during_a_step_shows_its_traceback_with_side_and_step(session_tmp):
    run = run_cli("compare", SMALL, f"{SMALL}:raises_at_step_2", *FAST, tmp_path=session_tmp)
    assert run.code == 3
    assert "Side B raised RuntimeError at step 2: boom in the user's loss" in run.stderr
    assert "side B, step 2" in run.stderr and "jax_small.py" in run.stderr  # the user's traceback
    assert run.report["side"] == "B" and run.report["step"] == 2


@pytest.mark.slow
def test_setup_raising_while_building(session_tmp):
    run = run_cli("compare", f"{SMALL}:raises_while_building", SMALL, *FAST, tmp_path=session_tmp)
    assert run.code == 3 and "Side A raised ValueError at setup: cannot build the model" in run.stderr


@pytest.mark.slow
def test_worker_killed(session_tmp):
    run = run_cli("compare", SMALL, f"{SMALL}:killed_at_step_1", *FAST, tmp_path=session_tmp, process=True)
    assert run.code == 3
    assert "Side B's worker was killed by signal 9 in step 1" in run.stderr


@pytest.mark.slow
def test_worker_hanging_past_step_timeout(session_tmp):
    run = run_cli("compare", SMALL, f"{SMALL}:hangs_at_step_1", *FAST, "--step-timeout", "8", tmp_path=session_tmp)
    assert run.code == 3
    assert "Side B did not answer within 8 s in step 1" in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["--env-b", "NOEQUALS"], "--env-b 'NOEQUALS' is not KEY=VAL"),
    (["--task", "regression"], "--task 'regression': choose one of binary, digits"),
    (["--init", "c"], "--init 'c': choose one of a, b, own"),
    (["--subset", "6000"], "--subset 6000: the data holds 5000 samples"),
    (["--data", "/nonexistent/mnist.npz"], "--data /nonexistent/mnist.npz: no such file"),
])
def test_usage_errors(session_tmp, args, message):
    run = run_cli("compare", SMALL, SMALL, *FAST, *args, tmp_path=session_tmp)
    assert run.code == 2, run.output
    assert message in run.stderr
    no_internal_traceback(run)


@pytest.mark.slow
def test_jax_pair_without_divergence(session_tmp):
    run = run_cli("compare", SMALL, SMALL, *FAST, tmp_path=session_tmp)
    assert run.code == 0, run.output
    assert run.report["all_bitwise_equal"]


def test_a_bug_in_xentdbg_is_one_message_and_a_saved_traceback(monkeypatch, capsys):
    """Not a setup's fault, not bad input: exit 70 with a pointer to the traceback file."""
    import sys

    import xentdbg.replay.engine as engine
    from xentdbg.cli import EXIT_INTERNAL, main

    def broken(*args, **kwargs):
        raise KeyError("[bold]pairing")  # markup-like text must be printed as is

    monkeypatch.setattr(engine, "compare", broken)
    monkeypatch.setattr(sys, "argv", ["xentdbg", "compare", "a.py", "b.py", "--steps", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: KeyError: '[bold]pairing'" in err and "Traceback" not in err
    path = err.split("The traceback is in ")[1].split(";")[0].strip()
    with open(path) as f:
        saved = f.read()
    assert "Traceback" in saved and "broken" in saved


# -- hostile input: exit 2 with a message, never 70 (in-process, no framework) -----------

def _cli(*args: str):
    from typer.testing import CliRunner

    from xentdbg.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "1000"})  # rich must not wrap long paths
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def _npy_header(f, shape, descr="<f4") -> None:
    from numpy.lib import format as npy_format

    npy_format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})


def test_deeply_nested_json_for_loss():
    code, out = _cli("loss", "cce", "--y-true", "[" * 100_000, "--y-pred", "saturated")
    assert code == 2 and "--y-true: JSON nested 100000 levels deep; at most 32 are read." in out


def test_loss_npy_declaring_a_huge_shape(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        _npy_header(f, (10**12,))
    code, out = _cli("loss", "bce", "--y-true", str(path), "--y-pred", "[[0.5]]")
    assert code == 2 and "shape (1000000000000,) of float32" in out and "more than the 256 MiB xentdbg reads" in out


def _zip_with(path, members: dict[str, bytes]):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_data_npz_declaring_a_huge_shape(tmp_path):
    """numpy.load would allocate 7 TB for this 200-byte file (MemoryError); the header is read first."""
    import io

    x, y = io.BytesIO(), io.BytesIO()
    _npy_header(x, (10**10, 28, 28), "|u1")
    _npy_header(y, (10**10,), "|u1")
    path = _zip_with(tmp_path / "mnist.npz", {"x_train.npy": x.getvalue(), "y_train.npy": y.getvalue()})
    code, out = _cli("compare", SMALL, SMALL, "--data", str(path))
    assert code == 2, out
    assert f"Cannot read MNIST file {path}: x_train: shape (10000000000, 28, 28) of uint8" in out
    assert "more than the 1 GiB xentdbg reads" in out


def test_data_npz_holding_an_object_array_is_refused_without_unpickling(tmp_path):
    import io

    x, y = io.BytesIO(), io.BytesIO()
    _npy_header(x, (1, 28, 28), "|O")
    _npy_header(y, (1,), "|u1")
    path = _zip_with(tmp_path / "mnist.npz", {"x_train.npy": x.getvalue() + b"\x80\x04.", "y_train.npy": y.getvalue()})
    code, out = _cli("compare", SMALL, SMALL, "--data", str(path))
    assert code == 2 and "an object array" in out and "never unpickles" in out


@pytest.mark.parametrize("kind,message", [("dir", "is a directory"), ("fifo", "is a FIFO, not a regular file")])
def test_data_that_is_not_a_file(tmp_path, kind, message):
    import os

    odd = tmp_path / "mnist.npz"
    (odd.mkdir() if kind == "dir" else os.mkfifo(odd))
    code, out = _cli("compare", SMALL, SMALL, "--data", str(odd))
    assert code == 2 and f"--data {odd}: {message}." in out


@pytest.mark.parametrize("name,text", [("deep.json", "[" * 100_000), ("deep.toml", "a = " + "[" * 100_000)])
def test_deeply_nested_pair_file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    code, out = _cli("compare", SMALL, SMALL, "--pair", str(tmp_path / name))
    assert code == 2 and "nested too deeply; a pair file is a flat mapping" in out


def test_pair_file_that_is_a_directory(tmp_path):
    code, out = _cli("compare", SMALL, SMALL, "--pair", str(tmp_path))
    assert code == 2 and f"--pair {tmp_path}: is a directory." in out


@pytest.mark.parametrize("name,text", [("big.json", '{"a": ' + "9" * 5000 + "}"), ("big.toml", "a = " + "9" * 5000)])
def test_pair_file_with_a_huge_integer(tmp_path, name, text):
    """Python refuses to convert more than 4300 digits to an int (a ValueError, not a decode error)."""
    (tmp_path / name).write_text(text)
    code, out = _cli("compare", SMALL, SMALL, "--pair", str(tmp_path / name))
    assert code == 2 and "not valid" in out


def test_loss_json_with_a_huge_integer():
    code, out = _cli("loss", "bce", "--y-true", "[[1]]", "--y-pred", "[[-" + "9" * 5000 + "]]", "--from-logits",
                     "--only", "reference")
    assert code == 0 and "inf" in out  # the float it rounds to
