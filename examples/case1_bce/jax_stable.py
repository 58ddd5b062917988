"""Case 1, JAX side with a "stable" BCE: clip p to [1e-6, 0.9999999], rebuild logits.

Finite everywhere, but saturated samples contribute a clipped loss and no gradient,
where Keras (TF backend) uses the exact logits: the two trainings part at step 0.
"""

import jax.numpy as jnp
import optax

import xentdbg

from common import LAYERS, LEARNING_RATE, init_params, probs_fn


def setup(data):
    apply = probs_fn()

    def loss_fn(params, x, y):
        p = jnp.clip(apply(params, x), 1e-6, 0.9999999)
        logits = jnp.log(p) - jnp.log1p(-p)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    return xentdbg.JaxLoop(init_params(data.input_shape[0]), loss_fn, optax.sgd(LEARNING_RATE), layers=LAYERS)
