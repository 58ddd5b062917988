"""Case 1, JAX side with the exact BCE on logits (``optax.sigmoid_binary_cross_entropy``).

This is what Keras 3 computes on the TensorFlow backend: it agrees with Keras fit.
"""

import jax.numpy as jnp
import optax

import xentdbg

from common import LAYERS, LEARNING_RATE, init_params, logits_fn


def setup(data):
    logits = logits_fn()

    def loss_fn(params, x, y):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits(params, x), y))

    return xentdbg.JaxLoop(init_params(data.input_shape[0]), loss_fn, optax.sgd(LEARNING_RATE), layers=LAYERS)
