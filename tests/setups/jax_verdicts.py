"""JAX pairs for the verdict rule: drift against introduced differences (JAX imports fast).

``base``: a 784-32-1 MLP, biases at 0.1, sigmoid cross-entropy on logits, SGD 0.1
(run with ``--pixels unit``).
- ``reordered``: the same loss written another way (``log1p(exp(-|z|))`` form): equal in
  exact arithmetic, so the two only drift apart by float32 rounding (exit 0).
- ``lr_off``: the learning rate 0.3% higher: introduced at step 0, in the update.
- ``schedule_at_20``: the learning rate halves from step 20: introduced at step 20.
- ``smoothed``: label smoothing 0.1 on this side only: introduced at step 0, in the loss.

``base_fast`` and ``reordered_fast``: the same two losses at SGD 1.0, where the float32
rounding between them grows to ~3e-5 of a tensor's scale within 200 steps: drift, which
``--rtol 1e-5`` flags and the cross-feed shows inherited.

``base_adam`` and ``reordered_adam``: the two losses under Adam 0.01. Each side keeps its
own moments, which drift with the weights; the cross-fed update check gives both sides
the same weights and gradients but not the same moments.
"""

import jax
import jax.numpy as jnp
import optax

import xentdbg

LR = 0.1
FAST_LR = 1.0
ADAM_LR = 0.01


def _params(d):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return [(jax.random.normal(k1, (d, 32)) * 0.05, jnp.full((32,), 0.1)),
            (jax.random.normal(k2, (32, 1)) * 0.2, jnp.full((1,), 0.1))]


def _logits(params, x):
    (w1, b1), (w2, b2) = params
    return jax.nn.relu(x @ w1 + b1) @ w2 + b2  # (N, 1), as the labels


def _optax_loss(params, x, y):
    return jnp.mean(optax.sigmoid_binary_cross_entropy(_logits(params, x), y))


def _setup(data, loss=_optax_loss, optimizer=None):
    return xentdbg.JaxLoop(_params(data.input_shape[0]), loss, optimizer or optax.sgd(LR))


def base(data):
    return _setup(data)


def _reordered_loss(params, x, y):
    z = _logits(params, x)
    return jnp.sum(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))) / z.shape[0]


def reordered(data):
    return _setup(data, _reordered_loss)


def lr_off(data):
    return _setup(data, optimizer=optax.sgd(LR * 1.003))


def schedule_at_20(data):
    return _setup(data, optimizer=optax.sgd(optax.piecewise_constant_schedule(LR, {20: 0.5})))


def smoothed(data):
    def loss(params, x, y):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(_logits(params, x), y * 0.9 + 0.05))

    return _setup(data, loss)


def base_fast(data):
    return _setup(data, optimizer=optax.sgd(FAST_LR))


def reordered_fast(data):
    return _setup(data, _reordered_loss, optax.sgd(FAST_LR))


def base_adam(data):
    return _setup(data, optimizer=optax.adam(ADAM_LR))


def reordered_adam(data):
    return _setup(data, _reordered_loss, optax.adam(ADAM_LR))
