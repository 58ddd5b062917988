"""Capture must not change what it captures: a captured fit ends bitwise where the same
fit without xentdbg ends, on both Keras backends, under Keras 2 (tf_keras) and under
MirroredStrategy, with BatchNorm, Dropout and an L2 regularizer in the model. And the
captured gradients are the ones fit applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import CASE1, ROOT, SETUPS, run_cli, shared

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess

KERAS_BN, LOOPS = str(SETUPS / "keras_bn.py"), str(SETUPS / "keras_loops.py")
TF_KERAS = str(SETUPS / "tf_keras_bn.py")  # tf.keras code, run with TF_USE_LEGACY_KERAS=1
MIRRORED = str(SETUPS / "keras_mirrored.py")  # Keras 3 loops under MirroredStrategy, 4 logical CPUs
# 500 samples, batch 100: 7 steps cross an epoch boundary (step 5 starts the second).
DATA = {"subset": 500, "batch": 100, "task": "digits", "pixels": "unit"}
CHECKS = {
    "fit tensorflow": {"check": "neutral", "setup": KERAS_BN, **DATA, "steps": 7, "mode": "full"},
    "fit fingerprint tensorflow": {"check": "neutral", "setup": KERAS_BN, **DATA, "steps": 7, "mode": "fingerprint"},
    "loop eager": {"check": "neutral", "setup": f"{LOOPS}:eager", **DATA, "steps": 7, "mode": "full"},
    "loop compiled": {"check": "neutral", "setup": f"{LOOPS}:compiled", **DATA, "steps": 7, "mode": "full"},
    # examples/case1_bce/keras_fit.py: plain SGD(0.01), no momentum
    "gradients tensorflow": {"check": "gradients", "setup": str(CASE1 / "keras_fit.py"), "subset": 1000,
                             "batch": 250, "pixels": "unit", "steps": 5, "lr": 0.01},
    "fit jax": {"check": "neutral", "setup": KERAS_BN, **DATA, "steps": 7, "mode": "full"},
    "gradients jax": {"check": "gradients", "setup": str(CASE1 / "keras_fit.py"), "subset": 1000,
                      "batch": 250, "pixels": "unit", "steps": 5, "lr": 0.01},
    "legacy": {"check": "neutral", "setup": str(CASE1.parent / "case2_batchnorm" / "legacy_complete.py"),
               **DATA, "steps": 8, "mode": "full"},
    "tf_keras fit": {"check": "neutral", "setup": TF_KERAS, **DATA, "steps": 7, "mode": "full"},
    "tf_keras loop compiled": {"check": "neutral", "setup": f"{TF_KERAS}:compiled", **DATA, "steps": 7,
                               "mode": "full"},
    "tf_keras loop eager": {"check": "neutral", "setup": f"{TF_KERAS}:eager", **DATA, "steps": 7, "mode": "full"},
    "tf_keras unseeded": {"check": "refused", "setup": f"{TF_KERAS}:unseeded", **DATA, "steps": 2},
    "tf_keras eager dropout": {"check": "refused", "setup": f"{TF_KERAS}:eager_dropout", **DATA, "steps": 2},
    "tf_keras gradients": {"check": "gradients", "setup": f"{TF_KERAS}:sgd", "subset": 1000, "batch": 250,
                           "pixels": "unit", "steps": 5, "lr": 0.01},
    "mirrored loop compiled": {"check": "replicas", "setup": f"{MIRRORED}:compiled", **DATA, "steps": 7},
    "mirrored loop eager": {"check": "replicas", "setup": f"{MIRRORED}:eager", **DATA, "steps": 7},
    "mirrored gradients": {"check": "gradients", "setup": f"{MIRRORED}:sgd", "subset": 500, "batch": 100,
                           "pixels": "unit", "steps": 7, "lr": 0.1},
    "mirrored split": {"check": "split", "setup": f"{MIRRORED}:sgd", "batches": [64, 50, 10, 5]},
    "mirrored outside scope": {"check": "refused", "setup": f"{MIRRORED}:outside_scope", **DATA, "steps": 1},
    "mirrored not a strategy": {"check": "refused", "setup": f"{MIRRORED}:not_a_strategy", **DATA, "steps": 1},
    "mirrored fit": {"check": "replicas", "setup": f"{MIRRORED}:fit", **DATA, "steps": 7},
    "mirrored fit gradients": {"check": "gradients", "setup": f"{MIRRORED}:fit_sgd", "subset": 500, "batch": 100,
                               "pixels": "unit", "steps": 7, "lr": 0.1},
}
# One process per Keras backend (the backend is fixed per process); the graph-mode tf_keras
# setup in a process of its own (graph mode is process-wide), and the eager tf_keras
# setups in another (TF_USE_LEGACY_KERAS is read when TensorFlow is imported). They run at once.
PROCESSES = {("tensorflow", "keras 3"): ["fit tensorflow", "fit fingerprint tensorflow", "loop eager", "loop compiled",
                                         "gradients tensorflow"],
             ("jax", "keras 3"): ["fit jax", "gradients jax"],
             ("tensorflow", "tf_keras"): ["legacy"],
             ("tensorflow", "tf.keras as tf_keras"): ["tf_keras fit", "tf_keras loop compiled", "tf_keras loop eager",
                                                      "tf_keras gradients", "tf_keras unseeded",
                                                      "tf_keras eager dropout"],
             ("tensorflow", "keras 3, mirrored"): ["mirrored loop compiled", "mirrored loop eager",
                                                   "mirrored gradients", "mirrored split", "mirrored outside scope",
                                                   "mirrored not a strategy", "mirrored fit",
                                                   "mirrored fit gradients"]}


def _run_all() -> dict:
    procs = {tuple(names): subprocess.Popen([sys.executable, str(SETUPS / "neutral_check.py"),
                                      *(json.dumps(CHECKS[n]) for n in names)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
                                          "TF_USE_LEGACY_KERAS": "1" if label.startswith("tf.keras") else "0"})
             for (backend, label), names in PROCESSES.items()}
    results = {}
    for names, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results.update(zip(names, json.loads(out.strip().splitlines()[-1]), strict=True))
    return results


@pytest.fixture(scope="module")
def neutral(session_tmp) -> dict:
    """Every check's result, run once per session on first use, also under xdist (``conftest.shared``)."""
    return shared("tests/setups/neutral_check.py " + json.dumps(CHECKS), _run_all, session_tmp)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_captured_fit_ends_bitwise_equal_to_plain_fit(neutral, backend):
    result = neutral[f"fit {backend}"]
    assert result["records"] == 7
    assert all(result["equal"]), result
    assert result["last_weights_equal"]


def test_light_capture_of_fit_is_neutral_too(neutral):
    """--fingerprint's first pass stores fit's loss in a variable inside compute_loss (TF backend)."""
    result = neutral["fit fingerprint tensorflow"]
    assert result["records"] == 7
    assert all(result["equal"]), result


@pytest.mark.parametrize("variant", ["eager", "compiled"])
def test_captured_keras_loop_ends_bitwise_equal_to_plain_loop(neutral, variant):
    result = neutral[f"loop {variant}"]
    assert result["records"] == 7
    assert all(result["equal"]), result


@pytest.mark.parametrize("check", ["tf_keras fit", "tf_keras loop compiled", "tf_keras loop eager"])
def test_captured_tf_keras_setups_end_bitwise_equal_to_plain(neutral, check):
    """tf_keras fit and loops: Dropout draws with stateful ops, which the recompute replays
    (it checks so on every step: a miss would raise, not record). The full capture's
    compute_loss wrapper is --fingerprint's (it stores the loss in both modes for tf_keras),
    so the light capture is covered too."""
    result = neutral[check]
    assert result["records"] == 7  # across the epoch boundary after step 4
    assert all(result["equal"]), result
    assert result["last_weights_equal"]


@pytest.mark.parametrize("check", ["mirrored loop compiled", "mirrored loop eager", "mirrored fit"])
def test_captured_setup_under_a_strategy_ends_bitwise_equal_on_every_replica(neutral, check):
    """MirroredStrategy on 4 logical CPUs, BatchNorm, Dropout, L2, Nesterov, a custom loop or
    model.fit: every replica's copy of every model variable ends
    bitwise where the plain run's does; the copies of the BatchNorm statistics part
    (per-replica statistics), and the records hold each one."""
    result = neutral[check]
    assert result["records"] == 7 and result["replicas"] == 4, result
    assert all(result["equal"]), result
    assert result["state_copies_part"] and result["last_state_equal"], result
    assert result["oracle_refused"], result  # the float64 oracle does not run under a strategy


@pytest.mark.parametrize("check", ["mirrored gradients", "mirrored fit gradients"])
def test_captured_gradients_under_a_strategy_are_the_applied_sums(neutral, check):
    """The recorded gradients (the replicas' local gradients summed as the optimizer sums
    them; fit's recomputed in each replica from its slice) are the ones SGD applied:
    w1 == w0 - lr * g bitwise."""
    result = neutral[check]
    assert result["records"] == 7 and result["checked"] == 6 * 6, result
    assert result["mismatches"] == [], result


def test_a_global_batch_reaches_the_replicas_as_the_strategys_pipeline_splits_it(neutral):
    """xentdbg splits each global batch itself (one dataset per step would be slow): the
    same samples per replica as experimental_distribute_dataset over Dataset.batch(n),
    uneven and empty slices included."""
    result = neutral["mirrored split"]
    assert all(entry["equal"] for entry in result.values()), result
    assert result["50"]["sizes"] == [13, 13, 13, 11] and result["5"]["sizes"] == [2, 2, 1, 0]


def test_a_strategy_setup_is_refused_with_a_reason(neutral):
    outside = neutral["mirrored outside scope"]
    assert "not created under strategy.scope()" in outside["error"] and "strategy.scope()" in outside["hint"]
    wrong = neutral["mirrored not a strategy"]
    assert "not a tf.distribute.Strategy" in wrong["error"], wrong


def test_tf_keras_capture_refuses_what_it_cannot_replay(neutral):
    """Unseeded Dropout: the recompute's loss is not the step's, so fit's capture stops rather
    than record other gradients; an eager step with Dropout is refused before it runs."""
    unseeded = neutral["tf_keras unseeded"]
    assert "recomputing the step from its pre-step weights gave the loss" in unseeded["error"], unseeded
    assert "set_random_seed" in unseeded["hint"]
    eager = neutral["tf_keras eager dropout"]
    assert "the train_step runs eagerly" in eager["error"] and "@tf.function" in eager["hint"], eager


def test_captured_tf_keras_gradients_are_the_applied_gradients(neutral):
    result = neutral["tf_keras gradients"]
    assert result["records"] == 5
    assert result["mismatches"] == [], result
    assert result["checked"] == 4 * 4


def test_captured_legacy_function_ends_bitwise_equal_to_plain(neutral):
    result = neutral["legacy"]
    assert all(result["equal"]), result


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_captured_gradients_are_the_applied_gradients(neutral, backend):
    """w_after == w_before - lr * captured_gradient, bitwise, at every step (on JAX the update
    w - lr*g is one fused multiply-add; on TF two roundings)."""
    result = neutral[f"gradients {backend}"]
    assert result["records"] == 5
    assert result["mismatches"] == [], result  # (step, parameter, max|expected - w_after|)
    assert result["checked"] == 4 * 4  # steps 1-4, each with the kernel and bias of both Dense layers


PLAIN_FIT = """
import json, sys
from xentdbg import _exit
from xentdbg.data import DataSpec
from xentdbg.replay.single import run_setup
spec = DataSpec(subset=200, batch_size=100, task="digits", pixels="unit")
plain = run_setup(sys.argv[1], spec, 5, capture=None)
_exit.ends_with_fast_exit()  # as a worker declares: from here on fit's iterators are kept
kept = run_setup(sys.argv[1], spec, 5, capture=None)
print(json.dumps({"plain": [w.tobytes().hex() for w in plain.final_weights],
                  "kept": [w.tobytes().hex() for w in kept.final_weights],
                  "iterators": [type(i).__name__ for i in _exit.kept_until_exit()]}))
_exit.fast_exit(0)
"""


def test_a_worker_keeps_fits_iterators_and_its_captured_fit_ends_where_a_plain_one_does(tmp_path):
    """A replay worker keeps fit's ``tf.data`` iterators until it exits
    (``xentdbg._exit.kept_until_exit``, ``_keras_private.epoch_iterators_kept``); a process
    that does not end with ``fast_exit`` keeps none. Across two epoch boundaries (5 steps,
    2 per epoch), a plain fit that keeps them ends bitwise where one that does not ends,
    and so does the worker's captured fit."""
    import h5py

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", PLAIN_FIT, KERAS_BN], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # epochs 1 and 2: one at the start and one at the end of each; epoch 3: its start
    assert out["iterators"] == ["OwnedIterator"] * 5
    assert out["kept"] == out["plain"]
    run = run_cli("trace", KERAS_BN, "--out", str(tmp_path / "w.h5"), "--subset", "200", "--batch-size", "100",
                  "--task", "digits", "--pixels", "unit", "--steps", "5", tmp_path=tmp_path,
                  env={"KERAS_BACKEND": "tensorflow"})
    assert run.code == 0, run.output
    with h5py.File(tmp_path / "w.h5", "r") as f:
        last = f["steps/00000004/weights"]
        traced = [last[name][()].tobytes().hex() for name in sorted(last)]
    assert traced == out["plain"]
