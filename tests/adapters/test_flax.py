"""Flax linen through JaxStep: a TrainState's parameters are found without ``params=``,
per-module activations come from linen's intermediates without a layer list, capture is
bitwise neutral, and the run pairs with the equivalent Keras model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flax", reason="Flax is the optional extra xentdbg[flax]")

from xentdbg.adapters import make_adapter  # noqa: E402
from xentdbg.data import DataSpec, load  # noqa: E402
from xentdbg.records import CaptureMode  # noqa: E402
from xentdbg.replay.loading import SetupRef, load_function  # noqa: E402

from conftest import SETUPS, run_cli  # noqa: E402

pytestmark = pytest.mark.slow  # imports JAX and Flax and compiles
LINEN = f"{SETUPS / 'flax_steps.py'}:linen_sgd"
ARGS = ["--task", "digits", "--pixels", "unit", "--subset", "96", "--batch-size", "32", "--steps", "3"]


def _data():
    return load(DataSpec(subset=96, batch_size=32, task="digits", pixels="unit"))


def test_linen_train_state_capture_is_neutral_and_records_module_outputs():
    data = _data()
    setup = load_function(SetupRef.parse(LINEN))(data)
    state = setup.state
    for i in range(3):  # the user's loop, without xentdbg
        sl = data.spec.batch_slice(i)
        state, _ = setup.step(state, (data.x[sl], data.y[sl]))
    plain = [np.asarray(a).tobytes() for a in __import__("jax").tree_util.tree_leaves(state.params)]
    adapter = make_adapter(load_function(SetupRef.parse(LINEN))(data), data)
    info = adapter.describe()
    assert [p.name for p in info.params] == ["['Dense_0']['bias']", "['Dense_0']['kernel']",
                                            "['Dense_1']['bias']", "['Dense_1']['kernel']"]
    assert info.layers == ["Dense_0", "Dense_1", "MLP"]  # call order; the model's own output last
    records = []
    adapter.train(3, records.append, capture=CaptureMode.FULL)
    assert [np.asarray(a).tobytes() for a in adapter.final_weights()] == plain
    acts = records[0].tensors["activations"]
    assert [(n, a.shape) for n, a in acts] == [("Dense_0", (32, 32)), ("Dense_1", (32, 10)), ("MLP", (32, 10))]


def test_linen_against_the_same_model_in_keras_is_clean(tmp_path):
    run = run_cli("compare", f"{SETUPS / 'flax_steps.py'}:keras_mlp", LINEN, *ARGS, tmp_path=tmp_path)
    assert run.code == 0, run.output


NNX = f"{SETUPS / 'flax_steps.py'}:nnx_adam"


def _nnx_user_loop(data, steps: int) -> list[bytes]:
    import jax
    from flax import nnx

    setup = load_function(SetupRef.parse(NNX))(data)
    for i in range(steps):  # the user's loop, without xentdbg
        sl = data.spec.batch_slice(i)
        setup.step(setup.model, setup.optimizer, (data.x[sl], data.y[sl]))
    state = nnx.as_pure(nnx.state(setup.model, nnx.Param))
    return [np.asarray(a).tobytes() for a in jax.tree_util.tree_leaves(state)]


def test_nnx_capture_is_neutral_with_batchnorm_and_dropout():
    data = _data()
    plain = _nnx_user_loop(data, 3)
    for emit, mode in ((None, CaptureMode.FULL), ([].append, CaptureMode.FULL), ([].append, CaptureMode.FINGERPRINT)):
        adapter = make_adapter(load_function(SetupRef.parse(NNX))(data), data)
        adapter.train(3, emit, capture=mode)
        assert [np.asarray(a).tobytes() for a in adapter.final_weights()] == plain, mode


def test_nnx_records_params_batch_stats_and_module_outputs_and_reruns_a_step():
    data = _data()
    adapter = make_adapter(load_function(SetupRef.parse(NNX))(data), data)
    info = adapter.describe()
    assert [p.name for p in info.params] == ["['bn']['bias']", "['bn']['scale']", "['dense']['bias']",
                                            "['dense']['kernel']", "['out']['bias']", "['out']['kernel']"]
    assert [s.name for s in info.state] == ["['bn']['mean']", "['bn']['var']"]
    records = []
    adapter.train(2, records.append, capture=CaptureMode.FULL)
    assert info.layers and all(a.shape[0] == 32 for _, a in records[0].tensors["activations"])
    # BatchNorm's statistics moved in step 0 (training mode)
    assert not np.array_equal(records[0].tensors["state"][0][1], adapter.initial_values()[1][0])
    rerun = adapter.evaluate(1, [w for _, w in records[0].tensors["weights"]],
                             [s for _, s in records[0].tensors["state"]])
    for phase in ("loss", "gradients", "weights", "state"):
        assert [np.asarray(t).tobytes() for _, t in rerun[phase]] == \
               [np.asarray(t).tobytes() for _, t in records[1].tensors[phase]], phase
    # the optimizer state given back in held_optimizer's order lands where it was: the same step
    held = adapter.held_optimizer(1)
    again = adapter.evaluate(1, [w for _, w in records[0].tensors["weights"]],
                             [s for _, s in records[0].tensors["state"]], optimizer=held)
    assert [np.asarray(t).tobytes() for _, t in again["weights"]] == \
           [np.asarray(t).tobytes() for _, t in records[1].tensors["weights"]]
    # and a different one (Adam's moments zeroed) changes the update
    zeroed = [np.zeros_like(a) if a.ndim else a for a in held]
    moved = adapter.evaluate(1, [w for _, w in records[0].tensors["weights"]],
                             [s for _, s in records[0].tensors["state"]], optimizer=zeroed)
    assert [np.asarray(t).tobytes() for _, t in moved["weights"]] != \
           [np.asarray(t).tobytes() for _, t in records[1].tensors["weights"]]


def test_nnx_batchnorm_momentum_is_the_first_divergence(tmp_path):
    run = run_cli("compare", NNX, f"{SETUPS / 'flax_steps.py'}:nnx_adam_bn_momentum", *ARGS, tmp_path=tmp_path)
    assert run.code == 1, run.output
    first = run.report["first_divergence"]
    assert (first["step"], first["phase"], first["name_a"]) == (0, "state", "['bn']['mean']"), first
    # the probe reads the batch mean from the activation before the module 'bn' ('dense')
    found = {f["cause"]: f for f in run.report["diagnosis"]["findings"]}
    assert found["batchnorm-momentum"]["numbers"] == pytest.approx({"momentum_a": 0.99, "momentum_b": 0.9},
                                                                    abs=1e-4)
