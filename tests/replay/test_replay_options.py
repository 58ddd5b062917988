"""--init choices and the inputs phase (fit's default shuffle)."""

from __future__ import annotations

import pytest

from conftest import SETUPS, run_cli

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

SMALL = str(SETUPS / "jax_small.py")
FAST = ["--steps", "3", "--subset", "64", "--batch-size", "32"]


# --init own: each side keeps its own initial weights, so the loss differs at step 0.
@pytest.mark.parametrize("init,code,first", [("a", 0, None), ("b", 0, None), ("own", 1, (0, "loss"))])
def test_init_choice(session_tmp, init, code, first):
    run = run_cli("compare", SMALL, f"{SMALL}:other_seed", *FAST, "--init", init, tmp_path=session_tmp)
    assert run.code == code, run.output
    found = run.report["first_divergence"]
    assert (None if found is None else (found["step"], found["phase"])) == first, found


def test_fit_default_shuffle_is_an_input_divergence_and_batchnorm_flags_are_captured(session_tmp):
    bn = str(SETUPS / "keras_bn.py")
    run = run_cli("compare", bn, f"{bn}:shuffled", "--task", "digits", "--pixels", "unit", "--subset", "200",
                  "--batch-size", "100", "--steps", "2", tmp_path=session_tmp)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"], first["name_a"]) == (0, "inputs", "x")
    assert "shuffle=False" in run.stdout
    # Both sides report BatchNormalization and Dropout receiving training=True from fit.
    flags = run.report["per_step"][0]["training_flags"]
    assert flags["a"] == flags["b"]
    assert flags["a"]["batch_normalization"] is True and flags["a"]["dropout"] is True
    assert not [t for t in run.report["also_diverged_in_step"] if t["phase"] == "flags"]


def test_example_libraries_optimizer_equals_optax(session_tmp):
    run = run_cli("compare", SMALL, f"{SMALL}:example_libraries_sgd", *FAST, tmp_path=session_tmp)
    assert run.code == 0, run.output
    assert run.report["all_bitwise_equal"]


def test_threaded_state_is_compared_after_gradients(session_tmp):
    """Same loss and gradients, different running-statistics momentum: the state phase diverges."""
    run = run_cli("compare", f"{SMALL}:stateful", f"{SMALL}:stateful_other_momentum", *FAST, tmp_path=session_tmp)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"], first["name_a"]) == (0, "state", "['running_mean']")
