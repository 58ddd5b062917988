"""JaxLoop re-runs a step from given weights whichever optimizer API it uses: optax, and
``jax.example_libraries.optimizers``, whose state carries the parameters itself."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.adapters import make_adapter
from xentdbg.data import DataSpec, load
from xentdbg.records import CaptureMode
from xentdbg.replay.loading import SetupRef, load_function

from conftest import SETUPS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("setup", ["jax_small.py:example_libraries_sgd", "jax_verdicts.py:base_adam"])
def test_a_rerun_from_other_weights_updates_those_weights(setup):
    data = load(DataSpec(subset=200, batch_size=100, task="binary", pixels="unit"))
    adapter = make_adapter(load_function(SetupRef.parse(str(SETUPS / setup)))(data), data)
    records = []
    adapter.train(2, records.append, capture=CaptureMode.FULL)
    own = [w for _, w in records[0].tensors["weights"]]  # the weights before step 1
    other = [w * np.float32(1.01) for w in own]
    grads = [g for _, g in records[1].tensors["gradients"]]
    from_own = adapter.evaluate(1, own, None, grads)["weights"]
    from_other = adapter.evaluate(1, other, None, grads)["weights"]
    for (_, a), (_, b), w, v in zip(from_own, from_other, own, other, strict=True):
        # the same update (same gradients and optimizer state) lands on the weights given
        np.testing.assert_allclose(np.asarray(b) - v, np.asarray(a) - w, rtol=1e-4, atol=1e-7)
    # and with this side's own held optimizer state given explicitly: bit for bit the same
    again = adapter.evaluate(1, own, None, grads, adapter.held_optimizer(1))["weights"]
    assert all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for (_, x), (_, y) in zip(again, from_own))
