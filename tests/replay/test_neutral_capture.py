"""Capture must not change what it captures: a captured fit ends bitwise where the same
fit without xentdbg ends, on both Keras backends, with BatchNorm, Dropout and an L2
regularizer in the model. And the captured gradients are the ones fit applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import CASE1, ROOT, SETUPS

pytestmark = pytest.mark.slow  # every test here runs the CLI or a framework in a subprocess


def _neutral(setup: str, backend: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(SETUPS / "neutral_check.py"), setup, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_captured_fit_ends_bitwise_equal_to_plain_fit(backend):
    # 500 samples, batch 100: 12 steps cross an epoch boundary.
    result = _neutral(str(SETUPS / "keras_bn.py"), backend, "500", "100", "12", "digits", "unit")
    assert result["records"] == 12
    assert all(result["equal"]), result
    assert result["last_weights_equal"]


def test_light_capture_of_fit_is_neutral_too():
    """--fingerprint's first pass stores fit's loss in a variable inside compute_loss (TF backend)."""
    result = _neutral(str(SETUPS / "keras_bn.py"), "tensorflow", "500", "100", "12", "digits", "unit", "fingerprint")
    assert result["records"] == 12
    assert all(result["equal"]), result


@pytest.mark.parametrize("variant", ["eager", "compiled"])
def test_captured_keras_loop_ends_bitwise_equal_to_plain_loop(variant):
    result = _neutral(f"{SETUPS / 'keras_loops.py'}:{variant}", "tensorflow", "500", "100", "12", "digits", "unit")
    assert result["records"] == 12
    assert all(result["equal"]), result


def test_captured_legacy_function_ends_bitwise_equal_to_plain():
    legacy = CASE1.parent / "case2_batchnorm" / "legacy_complete.py"
    result = _neutral(str(legacy), "tensorflow", "500", "100", "8", "digits", "unit")
    assert all(result["equal"]), result


GRADIENT_CHECK = """
import sys, numpy as np
from xentdbg.data import DataSpec
from xentdbg.replay.single import run_setup
fused = sys.argv[1] == "jax"  # XLA fuses w - lr*g into one FMA; TF does two roundings
lr = np.float32(0.01)  # examples/case1_bce/keras_fit.py: plain SGD, no momentum
run = run_setup(sys.argv[2], DataSpec(subset=1000, batch_size=250, pixels="unit"), 5)
assert len(run.records) == 5, len(run.records)
checked = 0
for prev, rec in zip(run.records, run.records[1:]):
    for (_, w0), (_, g), (_, w1) in zip(prev.tensors["weights"], rec.tensors["gradients"], rec.tensors["weights"],
                                        strict=True):
        checked += 1
        if fused:
            expected = (w0.astype(np.float64) - np.float64(lr) * g.astype(np.float64)).astype(np.float32)
        else:
            expected = w0 - lr * g
        assert expected.tobytes() == w1.tobytes(), (rec.step, float(np.abs(expected - w1).max()))
assert checked == 4 * 4, checked  # steps 1-4, each with the kernel and bias of both Dense layers
print("ok")
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_captured_gradients_are_the_applied_gradients(backend):
    """w_after == w_before - lr * captured_gradient, bitwise, at every step."""
    proc = subprocess.run([sys.executable, "-c", GRADIENT_CHECK, backend, str(CASE1 / "keras_fit.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
