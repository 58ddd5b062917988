"""Cause 9c, optimizer variant: Keras Adam ported to ``optax.adam`` "with the same defaults".

Bug (subtle): both are Adam with lr 1e-3, beta1 0.9, beta2 0.999, but the epsilons
differ in value *and* in where they go. optax: ``lr * m_hat / (sqrt(v_hat) + 1e-8)``.
Keras 3: ``lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + 1e-7)``, i.e.
``lr * m_hat / (sqrt(v_hat) + 1e-7 / sqrt(1 - beta2**t))``: at the first step an
effective epsilon of 3.2e-6, 316x optax's. The first update is about ``lr * sign(g)``
on both sides except for gradient elements near that epsilon (rarely-lit pixels of
the first kernel), where Keras's step is visibly smaller.

Fix: match the update rule, not the constants: ``jax_adam_keras_eps.py`` does and
agrees with Keras.
"""

import optax

from jax_common import jax_loop


def setup(data):
    return jax_loop(optax.adam(1e-3))  # eps=1e-8, applied to sqrt(v_hat)
