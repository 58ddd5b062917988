"""JaxLoop takes ``loss_fn(params, x, y)`` and ``loss_fn(params, batch)`` (``batch = (x, y)``),
with and without state, and trains bit for bit the same with either form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xentdbg import JaxLoop
from xentdbg.adapters import make_adapter
from xentdbg.adapters.jax_loop import xy_form
from xentdbg.data import DataSpec, load
from xentdbg.records import CaptureMode

pytestmark = pytest.mark.slow  # imports JAX and compiles


def _xy(params, x, y):
    p = jax.nn.sigmoid(x @ params["w"] + params["b"])
    return -jnp.mean(y * jnp.log(p + 1e-7) + (1 - y) * jnp.log(1 - p + 1e-7))


def _batch(params, batch):
    x, y = batch
    return _xy(params, x, y)


def _stateful_xy(params, state, x, y):
    return _xy(params, x, y), {"n": state["n"] + 1.0}


def _stateful_batch(params, state, batch):
    return _stateful_xy(params, state, *batch)


def _records(loss_fn, state=None):
    data = load(DataSpec(subset=64, batch_size=16, task="binary", pixels="unit"))
    params = {"w": jnp.full((784, 1), 0.01, jnp.float32), "b": jnp.zeros((1,), jnp.float32)}
    adapter = make_adapter(JaxLoop(params, loss_fn, optax.sgd(0.1), state=state), data)
    out = []
    adapter.train(3, out.append, capture=CaptureMode.FULL)
    return out


@pytest.mark.parametrize(("xy", "batch", "state"), [(_xy, _batch, None),
                                                    (_stateful_xy, _stateful_batch, {"n": jnp.zeros(())})])
def test_the_batch_form_trains_bit_for_bit_as_the_xy_form(xy, batch, state):
    for a, b in zip(_records(xy, state), _records(batch, state), strict=True):
        for phase in ("loss", "gradients", "state", "weights"):
            assert [np.asarray(t).tobytes() for _, t in a.tensors[phase]] == \
                   [np.asarray(t).tobytes() for _, t in b.tensors[phase]], phase


def test_which_form_is_read_from_the_signature():
    assert xy_form(_xy, 1) is _xy
    assert xy_form(_batch, 1) is not _batch
    assert xy_form(_stateful_xy, 2) is _stateful_xy
    assert xy_form(_stateful_batch, 2) is not _stateful_batch
    jitted = jax.jit(_batch)  # signature read through __wrapped__
    assert xy_form(jitted, 1) is not jitted
    star = lambda *args: _xy(*args)  # noqa: E731 - *args keeps the (params, x, y) form
    assert xy_form(star, 1) is star
