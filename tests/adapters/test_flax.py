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
