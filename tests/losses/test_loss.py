"""``xentdbg loss``: real TensorFlow, Keras 3, tf_keras, JAX and optax; no mocks.

Each module fixture starts each library once (a TensorFlow process costs ~5 s on 2 cores),
so tests share runs. Reference numbers: case 4 of docs/reference-cases.md, measured
with TensorFlow 2.21.0, Keras 3.15.1, tf_keras 2.21.0, JAX 0.10.2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from xentdbg.errors import UsageError
from xentdbg.losses import evaluate, preset, read_inputs
from xentdbg.losses.inputs import BCE, CCE, SCCE

from conftest import ROOT, run_cli

CASE4 = ("--y-true", "[[0,1],[1,0]]", "--y-pred", "[[0,1],[0,1]]")
KERAS_CASE4 = 8.05904769897461  # CategoricalCrossentropy()(case 4) on Keras-TF, Keras-JAX, tf_keras


def loss_cli(*args: str, tmp_path, name: str = "report.json"):
    """``python -m xentdbg loss ARGS --json FILE``: (CliRun, parsed JSON or None)."""
    path = tmp_path / name
    run = run_cli("loss", *args, "--json", str(path), tmp_path=tmp_path)
    return run, (json.loads(path.read_text()) if path.exists() else None)


def rows(report: dict) -> dict:
    return {r["key"]: r for r in report["implementations"]}


def causes(findings) -> dict:
    return {f["cause"] if isinstance(f, dict) else f.cause: f for f in findings}


# --- case 4, through the CLI, every implementation ----------------------------------------------


@pytest.fixture(scope="module")
def case4(tmp_path_factory):
    return loss_cli("categorical_crossentropy", *CASE4, tmp_path=tmp_path_factory.mktemp("case4"))


@pytest.mark.slow
def test_case4_keras_numbers(case4):
    run, report = case4
    assert run.code == 0, run.output
    r = rows(report)
    for key in ("keras-tf", "keras-jax", "tf-keras"):
        assert r[key]["status"] == "ok", r[key]
        assert r[key]["reduced"] == KERAS_CASE4
        assert r[key]["dtype"] == "float32"
        small, large = r[key]["per_sample"]
        assert small == pytest.approx(1.19e-7, rel=1e-2) and np.float32(large) == np.float32(16.118095)
        assert np.all(np.asarray(r[key]["gradient"]) == 0)  # every element clipped: no gradient at all
    assert r["reference"]["reduced"] == "nan" and r["reference"]["per_sample"] == ["nan", "inf"]
    assert r["optax"]["status"] == "n/a" and "logits" in r["optax"]["message"]
    assert ["keras-tf", "keras-jax", "tf-keras"] in report["identical"]


@pytest.mark.slow
def test_case4_terminal_report_explains_the_clip(case4):
    run, report = case4
    out = run.stdout
    assert "8.05904769897461" in out and "16.118095" in out and "1.1920929e-07" in out
    assert "Keras clips y_pred to [1e-07, 1 − 1e-07]" in out
    assert "−log(1e-07) = 16.118095" in out
    assert "0 × (−inf) = nan" in out  # why the reference is nan
    assert "keras/src/backend/tensorflow/nn.py:1372" in out
    assert "Traceback" not in run.output
    found = causes(report["findings"])
    assert found["clip"]["verified"] and found["clip"]["samples"] == [0, 1]
    assert found["reference_nan"]["samples"] == [0, 1]


# --- logits: agreement, the fused gradient, logits attached to a softmax -----------------------------


@pytest.fixture(scope="module")
def logits():
    # Row 1 is a weighted one-hot row (sums to 0.1); rows 0 and 1 saturate a softmax.
    y_true = [[0, 1], [0.1, 0], [0, 1]]
    z = [[-50, 50], [-50, 50], [0.5, -0.3]]
    return evaluate("cce", y_true, z, from_logits=True, implementations=("keras-tf", "keras-jax", "optax", "reference"))


@pytest.mark.slow
def test_logits_path_agrees_with_the_exact_formula(logits):
    ref = logits.result("reference")
    for key in ("keras-tf", "keras-jax", "optax"):
        r = logits.result(key)
        assert r.ok, r.message
        np.testing.assert_allclose(r.per_sample, ref.per_sample, rtol=1e-6, atol=1e-6)
        assert r.reduced == pytest.approx(ref.reduced, rel=1e-6)
    assert logits.result("keras-tf").per_sample[1] == pytest.approx(10.0)  # 0.1 * 100: no clip at 16.118
    assert causes(logits.findings)["logits_path"].verified


@pytest.mark.slow
def test_fused_gradient_assumes_label_rows_sum_to_one(logits):
    ref, tf_, jax_ = (logits.result(k) for k in ("reference", "keras-tf", "keras-jax"))
    np.testing.assert_allclose(jax_.gradient, ref.gradient, atol=1e-7)
    np.testing.assert_allclose(tf_.gradient[[0, 2]], ref.gradient[[0, 2]], atol=1e-7)
    # softmax - t instead of softmax * 0.1 - t, divided by N = 3: off by softmax * 0.9 / 3 = [0, 0.3]
    np.testing.assert_allclose(tf_.gradient[1] - ref.gradient[1], [0.0, 0.3], atol=1e-6)
    fused = causes(logits.findings)["fused_gradient"]
    assert fused.samples == (1,) and "keras-tf" in fused.implementations and "keras-jax" not in fused.implementations


@pytest.mark.slow
def test_softmax_output_keeps_its_logits_on_tensorflow_only(logits):
    tf_, jax_ = logits.result("keras-tf"), logits.result("keras-jax")
    assert tf_.via_activation == tf_.reduced  # the loss found _keras_logits and took the logits path
    # JAX clips softmax(z): sample 0 -log(1 - 1e-7), sample 1 0.1 * -log(1e-7), sample 2 as exact
    expected = np.mean([1.1920929e-07, 0.1 * 16.118095, jax_.per_sample[2]])
    assert jax_.via_activation == pytest.approx(expected, rel=1e-5)
    lines = " ".join(causes(logits.findings)["attached_logits"].evidence)
    assert "keras-tf" in lines and "_keras_logits" in lines and "clipped probabilities" in lines


# --- binary and sparse ----------------------------------------------------------------------------


@pytest.mark.slow
def test_binary_tf_keras_adds_epsilon_inside_the_log():
    report = evaluate(BCE, *preset("saturated", BCE, False), implementations="keras-tf,tf-keras,reference")
    tf_, tfk, ref = (report.result(k) for k in ("keras-tf", "tf-keras", "reference"))
    # Keras 3: -log(1 - 0.99999988); tf_keras: -log(1 - 0.99999988 + 1e-7)
    assert tf_.per_sample[1] == pytest.approx(-np.log(np.float64(1) - np.float32(1 - 1e-7)), rel=1e-6)
    assert tfk.per_sample[1] == pytest.approx(-np.log(1.1920929e-07 + 1e-7), rel=1e-6)
    assert np.isnan(ref.per_sample[0]) and np.isinf(ref.per_sample[1])
    found = causes(report.findings)
    assert found["log_epsilon"].samples == (0, 1) and found["log_epsilon"].verified
    assert found["clip"].verified


@pytest.mark.slow
def test_sparse_matches_categorical_and_optax_takes_integer_labels():
    labels, z = preset("random", SCCE, True)
    with ThreadPoolExecutor(2) as pool:  # two small evaluations side by side
        probs = pool.submit(evaluate, SCCE, [1, 0], [[0, 1], [0, 1]], implementations=("keras-jax", "reference"))
        logits = pool.submit(evaluate, SCCE, labels, z, from_logits=True, implementations=("optax", "reference"))
        probs, logits = probs.result(), logits.result()
    assert probs.result("keras-jax").reduced == KERAS_CASE4  # same numbers as case 4
    assert probs.result("reference").per_sample.tolist() == [0.0, np.inf]  # -log p[y]: no 0·log 0 term
    np.testing.assert_allclose(logits.result("optax").per_sample, logits.result("reference").per_sample, rtol=1e-6)
    np.testing.assert_allclose(logits.result("optax").gradient, logits.result("reference").gradient, atol=1e-7)


# --- inputs: files and presets through the CLI, bad input ------------------------------------------------


@pytest.mark.slow
def test_npz_input_and_preset_through_the_cli(tmp_path):
    np.savez(tmp_path / "batch.npz", y_true=np.eye(2)[[1, 0]], y_pred=np.float32([[0.2, 0.8], [0.6, 0.4]]))
    np.save(tmp_path / "pred.npy", np.float32([[0.2, 0.8], [0.6, 0.4]]))
    run, report = loss_cli("cce", "--y-true", f"{tmp_path}/batch.npz:y_true", "--y-pred", f"{tmp_path}/pred.npy",
                           "--only", "reference", tmp_path=tmp_path)
    assert run.code == 0, run.output
    assert rows(report)["reference"]["per_sample"] == pytest.approx([-np.log(0.8), -np.log(0.6)], rel=1e-6)
    run, report = loss_cli("bce", "--y-pred", "saturated", "--only", "reference", tmp_path=tmp_path, name="p.json")
    assert run.code == 0 and report["y_true"] == [[1.0], [0.0]] and report["y_pred"] == [[1.0], [1.0]]


def test_read_inputs_files_and_presets(tmp_path):
    np.savez(tmp_path / "one.npz", anything=np.float32([[0.5, 0.5]]))
    single = read_inputs(CCE, "[[0, 1]]", f"{tmp_path}/one.npz", False)
    assert single.y_pred.dtype == np.float32 and single.y_pred.tolist() == [[0.5, 0.5]]
    weighted = read_inputs(CCE, "weighted", "weighted", True)
    assert weighted.y_true.sum(-1).tolist() == pytest.approx([1, 1, 0.1, 0.1])
    rounded = read_inputs(CCE, "[[0, 1]]", "[[0.000000001, 0.999999999]]", False)
    assert "float32 rounding changed 1 value" in rounded.notes[0]


@pytest.mark.parametrize("args, message", [
    (("hinge", "--y-pred", "saturated"), "unknown loss 'hinge'"),
    (("cce", "--y-true", "[[0,1]]", "--y-pred", "[[0,1],[1,0"), "not valid JSON"),
    (("cce", "--y-true", "[[0,1]]", "--y-pred", "[[0,1],[0,1]]"),
     "y_true has shape (1, 2) but y_pred has shape (2, 2)"),
    (("cce", "--y-true", "[[0,1],[1]]", "--y-pred", "[[0,1],[0,1]]"), "ragged"),
    (("cce", "--y-true", "[[0,1]]", "--y-pred", '[["a", 1]]'), "holds text"),
    (("cce", "--y-true", "[[0,1]]", "--y-pred", "[[null, 1]]"), "mixes numbers with null"),
    (("cce", "--y-true", "[[0,1]]", "--y-pred", "missing.npy"), "missing.npy: no such file"),
    (("cce", "--y-pred", "saturate"), "neither a preset nor a file"),
    (("scce", "--y-true", "[2, 0]", "--y-pred", "[[0,1],[0,1]]"), "class indices outside 0..1"),
    (("scce", "--y-true", "[0.5, 0]", "--y-pred", "[[0,1],[0,1]]"), "integer class indices"),
    (("bce", "--y-pred", "weighted"), "categorical_crossentropy only"),
    (("cce", "--y-pred", "saturated", "--only", "keras,optax"), "unknown implementation keras"),
])
def test_bad_input_is_a_usage_error(args, message):
    from typer.testing import CliRunner

    from xentdbg.cli import app

    result = CliRunner().invoke(app, ["loss", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output and "error:" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.slow
def test_pickled_npy_is_refused_in_a_real_process(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[0.1, None]], dtype=object), allow_pickle=True)
    run, report = loss_cli("cce", "--y-true", "[[0,1]]", "--y-pred", str(tmp_path / "obj.npy"), tmp_path=tmp_path)
    assert run.code == 2
    assert "cannot read it without pickle" in run.stderr and "Traceback" not in run.output
    assert report["exit_code"] == 2 and "pickle" in report["error"]


def test_python_api_raises_usage_error():
    with pytest.raises(UsageError, match="needs equal shapes"):
        evaluate(CCE, [[0, 1]], [[0.5, 0.5], [0.5, 0.5]], implementations=["reference"])


@pytest.mark.slow
def test_missing_tf_keras_is_not_installed_not_an_error(tmp_path):
    hide = ROOT / "tests" / "setups" / "no_tf_keras"
    code = ("from xentdbg.losses import evaluate\n"
            "r = evaluate('cce', [[0, 1]], [[0.5, 0.5]], implementations=['tf-keras', 'reference'])\n"
            "print(r.result('tf-keras').status, '|', r.result('tf-keras').message, '|', r.exit_code)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "PYTHONPATH": str(hide)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "not installed | tf_keras not installed (pip install 'xentdbg[legacy]') | 0"


@pytest.mark.slow
def test_a_failing_implementation_is_a_row_and_exit_3(tmp_path):
    run, report = loss_cli("cce", "--y-pred", "saturated", "--only", "keras-tf,reference", "--timeout", "1",
                           tmp_path=tmp_path)
    assert run.code == 3 and report["exit_code"] == 3
    assert rows(report)["keras-tf"] == {**rows(report)["keras-tf"], "status": "error", "message": "timed out after 1 s"}
    assert rows(report)["reference"]["status"] == "ok"
    assert "keras-tf: timed out after 1 s" in run.stdout and "Traceback" not in run.output
