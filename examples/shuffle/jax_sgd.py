"""A JAX port of fit_shuffle.py in order: stax Dense(64) - Relu - Dense(10) - Softmax,
softmax cross-entropy on the logits, ``optax.sgd(0.1)``. Against fit without its shuffle
it agrees within float32 rounding; the initial weights come from side A (``--init a``)."""

import jax
import jax.numpy as jnp
import optax
from jax.example_libraries import stax

import xentdbg

LAYERS = [stax.Dense(64), stax.Relu, stax.Dense(10), stax.Softmax]


def setup(data):
    init_fun, _ = stax.serial(*LAYERS)
    _, params = init_fun(jax.random.PRNGKey(0), (-1, 784))
    _, logits_fn = stax.serial(*LAYERS[:-1])

    def loss_fn(params, x, y):
        return jnp.mean(optax.softmax_cross_entropy(logits_fn(params[:-1], x), y))

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.1), layers=LAYERS)
