"""Small 10-class JAX setups (run with ``--task digits --pixels unit``): models that differ
inside but train the same, and a NaN injected on one side at a known step."""

import jax
import jax.numpy as jnp
import optax
from jax.example_libraries import stax

import xentdbg


def _loop(data, head, loss_of_output, first=None):
    layers = [first or stax.Dense(32), stax.Relu, stax.Dense(10), head]
    init, _ = stax.serial(*layers)
    _, params = init(jax.random.PRNGKey(0), (-1, data.input_shape[0]))
    _, apply = stax.serial(*layers)

    def loss_fn(params, x, y):
        return loss_of_output(apply(params, x), y)

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.1), layers=layers)


def _from_log_probs(logp, y):
    return -jnp.mean(jnp.sum(y * logp, axis=-1))


def _from_probs(p, y):
    return -jnp.mean(jnp.sum(y * jnp.log(p), axis=-1))


def log_softmax(data):
    """The model ends in LogSoftmax; the loss reads log-probabilities."""
    return _loop(data, stax.LogSoftmax, _from_log_probs)


def softmax(data):
    """The model ends in Softmax; the loss takes their log: the same training, other outputs."""
    return _loop(data, stax.Softmax, _from_probs)


def _nan_dense(out_dim, trigger):
    """stax.Dense whose output is NaN on the one batch whose pixel sum is ``trigger``."""
    init_fun, dense_apply = stax.Dense(out_dim)

    def apply_fun(params, inputs, **kwargs):
        out = dense_apply(params, inputs, **kwargs)
        hit = jnp.abs(jnp.sum(inputs) - trigger) <= 1e-5 * abs(trigger)
        return jnp.where(hit, jnp.nan, out)

    return init_fun, apply_fun


def nan_at_step_2(data):
    """log_softmax, with NaN injected into the first layer's output at step 2 only."""
    batch = data.x[data.spec.batch_slice(2)]
    return _loop(data, stax.LogSoftmax, _from_log_probs, first=_nan_dense(32, float(batch.sum(dtype="float64"))))
