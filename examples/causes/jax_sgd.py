"""Clean JAX port of ``fit.py``: the stax network, softmax cross-entropy on the logits,
``optax.sgd(0.1)``. Against ``fit.py`` it agrees within float32 rounding."""

import optax

from common import LEARNING_RATE
from jax_common import jax_loop


def setup(data):
    return jax_loop(optax.sgd(LEARNING_RATE))
