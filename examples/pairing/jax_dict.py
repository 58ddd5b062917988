"""A hand-written JAX port of ``fit.py`` whose parameters are a dict of dicts laid out as
Flax lays them out: ``{"Dense_0": {"kernel", "bias"}, "Dense_1": {...}}``.

``jax.tree_util`` flattens a dict in sorted key order, so this side lists
``['Dense_0']['bias']`` before ``['Dense_0']['kernel']``: Keras's order is kernel first.
xentdbg pairs the two by layer and role (``kernel`` with ``kernel``), not by position.
Clean: agrees with ``fit.py`` within float32 rounding.
"""

import jax
import jax.numpy as jnp
import optax

import xentdbg

LEARNING_RATE = 0.1


def init_params(key):
    """Shapes as Keras's: kernel ``(in, out)``, bias ``(out,)``; values come from A (--init a)."""
    k0, k1 = jax.random.split(key)
    return {
        "Dense_0": {"kernel": jax.random.normal(k0, (784, 64)) * 0.05, "bias": jnp.zeros(64)},
        "Dense_1": {"kernel": jax.random.normal(k1, (64, 10)) * 0.05, "bias": jnp.zeros(10)},
    }


def logits(params, x):
    h = jax.nn.relu(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def loss_fn(params, x, y):
    return jnp.mean(optax.softmax_cross_entropy(logits(params, x), y))


def setup(data):
    return xentdbg.JaxLoop(init_params(jax.random.PRNGKey(0)), loss_fn, optax.sgd(LEARNING_RATE))
