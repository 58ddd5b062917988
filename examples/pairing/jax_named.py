"""The network of ``fit_deep.py`` by hand in JAX, its layers in a dict by role:
``input``, ``middle``, ``last_hidden``, ``output``, each ``{"w", "b"}``.

Sorted, the keys put ``last_hidden`` before ``middle``, and both are ``(64, 64)``: the
order of the flattened parameters says nothing about which pairs with Keras's
``dense_1`` and which with ``dense_2``. xentdbg does not guess (exit 2, naming the two);
``pairs.toml`` says it: ``dense_1`` is ``middle``, ``dense_2`` is ``last_hidden``.
With ``--pair examples/pairing/pairs.toml`` the pair is clean.
"""

import jax
import jax.numpy as jnp
import optax

import xentdbg

LEARNING_RATE = 0.1
ORDER = ("input", "middle", "last_hidden", "output")
SIZES = (784, 64, 64, 64, 10)


def setup(data):
    keys = jax.random.split(jax.random.PRNGKey(0), len(ORDER))
    params = {name: {"w": jax.random.normal(k, (n, m)) * 0.05, "b": jnp.zeros(m)}
              for name, k, n, m in zip(ORDER, keys, SIZES[:-1], SIZES[1:])}

    def loss_fn(params, x, y):
        h = x
        for name in ORDER[:-1]:
            h = jax.nn.relu(h @ params[name]["w"] + params[name]["b"])
        logits = h @ params["output"]["w"] + params["output"]["b"]
        return jnp.mean(optax.softmax_cross_entropy(logits, y))

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(LEARNING_RATE))
