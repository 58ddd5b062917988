"""Parameters paired by structure (examples/pairing): a frozen layer named as the cause,
an ambiguous layout refused with the layers named, and bad pair files."""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLES, run_cli, run_pair, words

FOLDER = EXAMPLES / "pairing"
OPTS = ("--task", "digits", "--pixels", "unit", "--subset", "300", "--batch-size", "100", "--steps", "3")


@pytest.mark.slow
def test_frozen_layer_is_the_first_divergence_and_the_cause(session_tmp):
    run = run_pair("pairing", "frozen hidden layer on one side", session_tmp)
    assert run.code == 1
    out = words(run.output)
    assert "step 0 · update · sequential/dense/kernel" in out
    assert "B does not train `sequential/dense/kernel`, `sequential/dense/bias`" in out
    assert "stays bitwise equal" in out
    assert "Learning rates differ" not in out


@pytest.mark.slow
def test_equal_shaped_layers_in_a_dict_are_refused_naming_them(session_tmp):
    run = run_cli("compare", str(FOLDER / "fit_deep.py"), str(FOLDER / "jax_named.py"), *OPTS, tmp_path=session_tmp)
    assert run.code == 2, run.output[-2000:]
    err = " ".join(run.stderr.split())
    assert "side B's layers last_hidden, middle have the same shapes" in err
    assert "--pair FILE" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"a": 1}), "flat mapping"),
    (json.dumps({"a": "x", "b": "x"}), "given for two A names"),
])
def test_bad_pair_files_are_usage_errors_before_any_worker_starts(tmp_path, content, message):
    bad = tmp_path / "pairs.json"
    bad.write_text(content)
    run = run_cli("compare", str(FOLDER / "fit.py"), str(FOLDER / "jax_dict.py"), *OPTS, "--pair", str(bad),
                  tmp_path=tmp_path)
    assert run.code == 2 and message in run.stderr and "Traceback" not in run.stderr
