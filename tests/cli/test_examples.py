"""Every example pair (``examples/<topic>/pairs.json``) gives the exit code its table states.

Runs are shared with the tests that read a pair's report (``conftest.run_pair``)."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES, example_pairs, run_pair

PAIRS = example_pairs()


def test_every_index_names_files_that_exist_and_an_exit_code():
    assert PAIRS, "no examples/*/pairs.json found"
    for (topic, name), entry in PAIRS.items():
        assert entry.get("exit") in (0, 1), f"{topic}/{name}: 'exit' must be 0 or 1"
        for side in ("a", "b"):
            path = entry[side].split(":")[0]
            assert (EXAMPLES / topic / path).is_file(), f"{topic}/{name}: {path} missing"
        assert (EXAMPLES / topic / "README.md").is_file(), f"examples/{topic} has no README.md"


@pytest.mark.slow
@pytest.mark.parametrize("topic,name", sorted(PAIRS), ids=[f"{t}/{n}" for t, n in sorted(PAIRS)])
def test_pair_gives_its_stated_exit_code(topic, name, session_tmp):
    run = run_pair(topic, name, session_tmp)
    assert run.code == PAIRS[(topic, name)]["exit"], run.output[-3000:]


@pytest.mark.slow
def test_loop_that_bypasses_the_optimizer_is_a_usage_error_not_zero_gradients(session_tmp):
    folder = EXAMPLES / "capture"
    args = ("--task", "digits", "--pixels", "unit", "--subset", "300", "--batch-size", "100", "--steps", "3")
    from conftest import run_cli

    run = run_cli("compare", str(folder / "fit.py"), str(folder / "loop_assign_sub.py"), *args, tmp_path=session_tmp)
    assert run.code == 2, run.output[-3000:]
    assert "without calling optimizer.apply" in run.stderr and "--fingerprint" in run.stderr
    light = run_cli("compare", str(folder / "fit.py"), str(folder / "loop_assign_sub.py"), *args, "--fingerprint",
                    tmp_path=session_tmp)
    assert light.code == 0, light.output[-3000:]  # the same training; only gradients were out of reach
