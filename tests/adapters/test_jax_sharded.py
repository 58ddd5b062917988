"""JaxStep with a mesh: a data-parallel step over 4 CPU devices (``XLA_FLAGS=
--xla_force_host_platform_device_count=4``), written with ``jax.shard_map`` or jitted over
the sharded batch. Capture stays bitwise neutral, replica r gets the r-th contiguous slice
of the batch (on 1-D and 2-D meshes), each replica's record holds its samples and the local
loss and gradients a data-parallel step computes on them, the cross-feed re-runs the step on
the sharded batch, and bad input is refused with a UsageError.

The devices exist only when the flag is set before JAX starts, so the checks run in one
subprocess (``tests/setups/jax_sharded.py``); ``compare`` runs the example pairs of
``examples/distributed/jax_model.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SETUPS, run_cli, run_pair, words

pytestmark = pytest.mark.slow  # JAX in a subprocess, and the CLI

FLAG = "XLA_FLAGS=--xla_force_host_platform_device_count=4"
STEPS = 3


@pytest.fixture(scope="module")
def checks() -> dict:
    proc = subprocess.run([sys.executable, str(SETUPS / "jax_sharded.py"), str(STEPS)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "XLA_FLAGS": FLAG.split("=", 1)[1]})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["shard_map", "jit"])
def test_capture_is_bitwise_neutral(checks, name):
    for mode, result in checks["neutral"][name].items():
        assert result["equal"], (name, mode)  # final weights bitwise those of the user's own loop
        assert result["last_record_is_final"], (name, mode)
    assert checks["neutral"][name]["full"]["replicas"] == [4] * STEPS  # per-replica records with full capture


def test_replica_r_gets_the_rth_contiguous_slice(checks):
    assert checks["split"] and all(checks["split"].values()), checks["split"]


def test_replicas_hold_their_samples_and_local_loss_and_gradients(checks):
    rep = checks["replicas"]
    assert rep["count"] == 4 and rep["inputs_equal"] and rep["names_match"]
    # shard_map(value_and_grad(loss_fn)) per replica == value_and_grad(loss_fn) on its slice
    assert rep["loss_gap"] < 1e-6 and rep["local_gap"] < 1e-6, rep
    assert rep["mean_gap"] < 1e-6, rep  # the step pmean-s them: the applied gradients are their mean
    assert all(rep["rerun_equal"].values()) and rep["rerun_replicas"], rep
    assert rep["framework"] == {
        "shard_map": {"replicas": "4", "strategy": "shard_map", "mesh": "data=4", "batch_axis": "data"},
        "jit": {"replicas": "4", "strategy": "jit sharding", "mesh": "data=4", "batch_axis": "data"}}


def test_bad_meshes_and_batches_are_refused(checks):
    refused = checks["refused"]
    assert "global batch of 30 samples does not split into the 4 replicas" in refused["indivisible"]
    assert "global batch of 6 samples" in refused["short last batch"]
    assert "not a jax.sharding.Mesh" in refused["not a mesh"]
    assert "'batch' is not an axis of the mesh" in refused["no such axis"]


@pytest.mark.parametrize("name", ["replicas4", "replicas4_sync"])
def test_batchnorm_state_is_captured_per_replica_and_capture_stays_neutral(checks, name):
    """A linen TrainState with batch_stats (examples/distributed/jax_bn.py): every leaf of
    the state ends bitwise where the user's loop ends, in each capture mode; replica r's
    batch_stats are what the model's loss computes on its slice alone (per-replica
    BatchNorm) or on the whole batch (axis_name); its BatchNorm outputs are normalized per
    slice only without axis_name; a re-run from the recorded values reproduces step 1."""
    bn = checks["bn"]
    for mode in ("none", "full", "fingerprint"):
        assert bn["neutral"][f"{name} {mode}"] == {"equal": True, "state_is_final": True}, (name, mode)
    local = bn["local"][name]
    assert local["names"] == ["['BatchNorm_0']['mean']", "['BatchNorm_0']['var']"]
    assert local["layers"] == ["Dense_0", "BatchNorm_0", "Dense_1", "MLP"]
    assert local["gap"] < 1e-6, local
    if name == "replicas4":  # copies part; each slice's normalized rows have mean 0 (bias 0 at init)
        assert local["spread"] > 1e-3 and local["slice_means"] < 1e-5, local
    else:  # one set of statistics, the batch's: a slice's mean is not 0
        assert local["spread"] == 0.0 and local["slice_means"] > 1e-2, local
    assert all(bn["rerun"][name].values()), bn["rerun"][name]


def test_a_loss_that_needs_the_mesh_axis_needs_grads_fn(checks):
    assert "loss_fn runs only on the mesh, under jax.shard_map" in checks["bn"]["refused"]
    assert "unbound axis name: data" in checks["bn"]["refused"]


def test_per_replica_flax_batchnorm_is_named_and_axis_name_agrees_with_one_device(session_tmp):
    """The example pairs (shared with test_examples.py): without axis_name the replicas'
    batch_stats fit their own slices and the cause is named with linen's fix; with
    ``BatchNorm(axis_name="data")`` the sides agree (updates are not compared against a
    JaxStep: the Dense bias before BatchNorm has gradients at the float32 noise floor)."""
    run = run_pair("distributed", "JAX: per-replica BatchNorm (no axis_name) against one device's", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    assert (report["first_divergence"]["step"], report["first_divergence"]["phase"]) == (0, "loss")
    top = report["diagnosis"]["findings"][0]
    assert top["cause"] == "per-replica-batchnorm", report["diagnosis"]
    assert top["numbers"]["layers"] == ["BatchNorm_0"]
    assert "replica r's 16/16/16/16 samples" in " ".join(top["evidence"])
    assert 'axis_name="data"' in top["fix"]
    clean = run_pair("distributed", "JAX: BatchNorm(axis_name) on 4 devices against one device (clean)", session_tmp)
    assert clean.code == 0, clean.output[-3000:]
    assert "side A (JaxStep) cannot re-run its optimizer step" in " ".join(clean.report["notes"])


def test_summed_gradients_are_named_and_pmean_agrees_with_one_device(session_tmp):
    """The example pair (shard_map's default check_vma: jax.grad already sums, the pmean
    leaves 4x; shared with test_examples.py) names the cause with JAX's fix; the pmean of
    local gradients (check_vma=False) agrees with one device."""
    run = run_pair("distributed", "JAX: pmean under shard_map's default check_vma: gradients 4x", session_tmp)
    assert run.code == 1, run.output[-3000:]
    report = run.report
    assert (report["b"]["framework"]["replicas"], report["b"]["framework"]["strategy"]) == ("4", "shard_map")
    assert (report["first_divergence"]["step"], report["first_divergence"]["phase"]) == (0, "gradients")
    top = report["diagnosis"]["findings"][0]
    assert top["cause"] == "unscaled-replica-loss", report["diagnosis"]
    assert abs(top["numbers"]["factor"] - 4) < 1e-4
    assert "local gradients sum to the applied ones" in " ".join(top["evidence"])
    assert "check_vma" in top["fix"] and "pmean" in top["fix"]
    model = "examples/distributed/jax_model.py"
    clean = run_cli("compare", f"{model}:single", f"{model}:shard4", "--subset", "256", "--steps", "2",
                    "--env-b", FLAG, tmp_path=session_tmp)
    assert clean.code == 0, clean.output[-3000:]
    assert "4 replicas (shard_map)" in words(clean.stdout)
