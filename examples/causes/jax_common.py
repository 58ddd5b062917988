"""The network of common.py as stax layers, for the JAX ports (no TensorFlow import).

``Dense(64) - Relu - Dense(10) - Softmax``; xentdbg pairs ``Dense(64), Relu`` with
Keras's ``dense`` (relu inside) and ``Dense(10), Softmax`` with ``dense_1``. The initial
weights come from side A (``--init a``); the PRNG key only fixes the shapes.
"""

import jax
import jax.numpy as jnp
import optax
from jax.example_libraries import stax

import xentdbg

LAYERS = [stax.Dense(64), stax.Relu, stax.Dense(10), stax.Softmax]


def jax_loop(optimizer, probs_as_logits=False, log_eps=None):
    """Mean categorical cross-entropy on the logits, trained by ``optimizer`` (optax).
    ``probs_as_logits``: the bug of cause 13, the network's softmax output given to the
    loss as if it were the logits. ``log_eps``: cause 14, a hand-written
    ``-sum(y log(p + log_eps))`` on the softmax output."""
    init_fun, _ = stax.serial(*LAYERS)
    _, params = init_fun(jax.random.PRNGKey(0), (-1, 784))
    _, logits_fn = stax.serial(*LAYERS[:-1])
    _, probs_fn = stax.serial(*LAYERS)

    def loss_fn(params, x, y):
        if log_eps is not None:
            return jnp.mean(-jnp.sum(y * jnp.log(probs_fn(params, x) + log_eps), axis=1))
        if probs_as_logits:
            return jnp.mean(optax.softmax_cross_entropy(probs_fn(params, x), y))
        logits = logits_fn(params[:-1], x)
        return jnp.mean(optax.softmax_cross_entropy(logits, y))

    return xentdbg.JaxLoop(params, loss_fn, optimizer, layers=LAYERS)
