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
    assert rep["framework"] == {"shard_map": {"replicas": "4", "strategy": "shard_map", "mesh": "data=4"},
                                "jit": {"replicas": "4", "strategy": "jit sharding", "mesh": "data=4"}}


def test_bad_meshes_and_batches_are_refused(checks):
    refused = checks["refused"]
    assert "global batch of 30 samples does not split into the 4 replicas" in refused["indivisible"]
    assert "global batch of 6 samples" in refused["short last batch"]
    assert "not a jax.sharding.Mesh" in refused["not a mesh"]
    assert "'batch' is not an axis of the mesh" in refused["no such axis"]


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
