"""Control for cause 9c: optax Adam with Keras 3's epsilon placement.

optax's ``eps`` is added to ``sqrt(v_hat)`` with no option for Keras's placement, so this
writes the Keras rule directly: ``lr * m_hat / (sqrt(v_hat) + eps / sqrt(1 - beta2**t))``
with eps 1e-7. ``xentdbg compare fit_adam.py jax_adam_keras_eps.py`` finds no divergence.
"""

import jax
import jax.numpy as jnp
import optax

from jax_common import jax_loop


def keras_adam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return (jnp.zeros([], jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        t, m, v = state
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - b1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - b2), v, grads)
        tf = t.astype(jnp.float32)
        alpha = learning_rate * jnp.sqrt(1 - b2 ** tf) / (1 - b1 ** tf)
        updates = jax.tree_util.tree_map(lambda m, v: -alpha * m / (jnp.sqrt(v) + eps), m, v)
        return updates, (t, m, v)

    return optax.GradientTransformation(init, update)


def setup(data):
    return jax_loop(keras_adam())
