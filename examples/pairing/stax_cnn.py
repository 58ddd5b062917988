"""The CNN of ``fit_cnn.py`` in stax: ``Conv(4, (3, 3)), Relu, Flatten, Dense(10)``.

stax keeps a convolution's bias as ``(1, 1, 1, C)`` (broadcast over NHWC;
jax/example_libraries/stax.py, ``GeneralConv``: ``bias_shape = [out_chan if c == 'C'
else 1 for c in out_spec]``), where Keras keeps ``(C,)``. xentdbg pairs the two biases
(shapes equal up to axes of size 1), hands A's initial bias over reshaped, and compares
them reshaped. Clean: agrees with ``fit_cnn.py`` within float32 rounding.
"""

import jax
import jax.numpy as jnp
import optax
from jax.example_libraries import stax

import xentdbg

LEARNING_RATE = 0.1
NET = stax.serial(stax.Conv(4, (3, 3)), stax.Relu, stax.Flatten, stax.Dense(10))


def setup(data):
    init_fun, apply_fun = NET
    _, params = init_fun(jax.random.PRNGKey(0), (-1, 28, 28, 1))

    def loss_fn(params, x, y):
        return jnp.mean(optax.softmax_cross_entropy(apply_fun(params, x.reshape(-1, 28, 28, 1)), y))

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(LEARNING_RATE))
