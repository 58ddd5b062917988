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
    run = run_cli("compare", SMALL, f"{SMALL}:killed_at_step_1", *FAST, tmp_path=session_tmp)
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
