"""The cross-feed probe of the TensorFlow loop adapters (``Adapter.evaluate``) on real
frameworks: KerasLoop (eager and tf.function steps over BatchNorm, Dropout and an L2
regularizer; a tf.function loss) and LegacyKerasFunction (tf_keras graph mode); and, in the
process that holds the MirroredStrategy, KerasLoop and KerasFit under it.

Each process (tests/setups/evaluate_loop_check.py) trains 4 steps with full capture and,
at every emit, re-runs the step just emitted and the one before from that side's own
pre-step values: what evaluate computes must be bitwise what the step recorded, and
the run must end bitwise where a plain run ends. Both processes run at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES, ROOT, SETUPS, shared

pytestmark = pytest.mark.slow  # two framework subprocesses, about 10 s together

LOOPS = [f"{SETUPS / 'keras_loops.py'}:compiled", f"{SETUPS / 'keras_loops.py'}:eager",
         str(EXAMPLES / "case3_tf_function_loss" / "decorated.py")]
LEGACY = str(EXAMPLES / "case2_batchnorm" / "legacy_complete.py")
# MirroredStrategy on 4 logical CPUs: set before TensorFlow starts, so in a process of its own
MIRRORED = f"{SETUPS / 'keras_mirrored.py'}:compiled"
MIRRORED_FIT = f"{SETUPS / 'keras_mirrored.py'}:fit"
DATA = ["200", "100", "3", "digits", "unit"]  # 2 batches: step 2 starts a second epoch


def _run_both() -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen([sys.executable, str(SETUPS / "evaluate_loop_check.py"), *DATA, *setups], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for setups in (LOOPS, [LEGACY], [MIRRORED, MIRRORED_FIT])]
    out = {}
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-3000:]
        out.update(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.fixture(scope="module")
def results(session_tmp) -> dict:
    """Run once per session, on first use, also under xdist (``conftest.shared``)."""
    key = json.dumps([DATA, LOOPS, LEGACY, MIRRORED, MIRRORED_FIT])
    return shared(f"tests/setups/evaluate_loop_check.py {key}", _run_both, session_tmp)


@pytest.mark.parametrize("setup", LOOPS)
def test_keras_loop_reruns_each_step_bitwise(results, setup):
    result = results[setup]
    assert set(result["phases"]) == {"loss", "gradients", "activations", "state", "weights"}
    for phase, entry in result["phases"].items():
        assert entry["calls"] == 5, (phase, entry)  # evaluate(k) at steps 0-2, evaluate(k - 1) at 1-2
        assert entry["bitwise"], (phase, entry)
    assert result["with_grads"] is True  # the record's gradients applied give the record's weights


def test_legacy_function_reruns_loss_gradients_and_activations_bitwise(results):
    result = results[LEGACY]
    # "state" and "weights" come from updates inside the user's K.function: left out
    assert set(result["phases"]) == {"loss", "gradients", "activations"}
    for phase, entry in result["phases"].items():
        assert entry["calls"] == 5 and entry["bitwise"], (phase, entry)
    assert result["with_grads"] is None


def test_keras_loop_under_a_strategy_reruns_each_step(results):
    """Under MirroredStrategy every phase is re-run bitwise but the loss: the step returns
    the replicas' losses reduced by strategy.reduce, which the dry copy's graph may round
    otherwise (one ulp per replica at most; see KerasLoopAdapter._check_replayed)."""
    result = results[MIRRORED]
    replicas = {p for p in result["phases"] if p.startswith("replica:")}
    # each replica's samples, loss, local gradients and state copy re-run too
    assert replicas == {f"replica:{r}:{p}" for r in range(4) for p in ("inputs", "loss", "gradients", "state")}
    for phase, entry in result["phases"].items():
        assert entry["calls"] == 5, (phase, entry)
        assert entry["bitwise"] or phase == "loss", (phase, entry)
    assert result["phases"]["loss"]["max_abs"] <= 4 * 4 * 1.2e-7 * 3, result["phases"]["loss"]
    assert result["with_grads"] is True  # the summed gradients given: the record's weights on every replica


def test_keras_fit_under_a_strategy_reruns_each_step_bitwise(results):
    """model.fit under MirroredStrategy: the recompute and fit's own step, per replica from
    its slice and its own copies of the state, give every phase and every replica's record
    bitwise, the loss too (summed in replica order on both paths)."""
    result = results[MIRRORED_FIT]
    replicas = {p for p in result["phases"] if p.startswith("replica:")}
    assert replicas == {f"replica:{r}:{p}" for r in range(4) for p in ("inputs", "loss", "gradients", "state")}
    assert set(result["phases"]) - replicas == {"loss", "gradients", "activations", "state", "weights"}
    for phase, entry in result["phases"].items():
        assert entry["calls"] == 5 and entry["bitwise"], (phase, entry)
    assert result["with_grads"] is True  # the summed gradients given: the record's weights


@pytest.mark.parametrize("setup", [*LOOPS, LEGACY, MIRRORED, MIRRORED_FIT])
def test_evaluate_leaves_training_as_it_was(results, setup):
    result = results[setup]
    assert result["final_equal"], result  # the probed run ends where the plain run ends
    assert result["final_equal_after_probes"], result  # probes after train() change nothing either


@pytest.mark.parametrize("setup", [*LOOPS, LEGACY, MIRRORED, MIRRORED_FIT])
def test_evaluate_after_train_and_from_other_values(results, setup):
    result = results[setup]
    # re-runs agree with the record; under a strategy the returned loss to the rounding of its reduction
    # (test_keras_loop_under_a_strategy_reruns_each_step)
    assert result["after"] and all(ok for phase, ok in result["after"].items()
                                   if not (setup == MIRRORED and phase == "loss")), result["after"]
    assert result["perturbed_loss_differs"]
    assert result["older_refused"] and result["fingerprint_refused"]
