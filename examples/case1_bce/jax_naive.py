"""Case 1, JAX side with the textbook BCE: -mean(y*log(p) + (1-y)*log(1-p)).

On raw 0..255 pixels many sigmoid outputs are exactly 0.0 or 1.0 in float32, so
log(0) makes the loss and every gradient non-finite from step 0.
"""

import jax.numpy as jnp
import optax

import xentdbg

from common import LAYERS, LEARNING_RATE, init_params, probs_fn


def setup(data):
    apply = probs_fn()

    def loss_fn(params, x, y):
        p = apply(params, x)
        return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))

    return xentdbg.JaxLoop(init_params(data.input_shape[0]), loss_fn, optax.sgd(LEARNING_RATE), layers=LAYERS)
