"""JAX's examples/mnist_classifier_fromscratch.py (plain JAX, no libraries), as a setup.

Source: https://github.com/jax-ml/jax/blob/main/examples/mnist_classifier_fromscratch.py
(Apache-2.0). Parameters, model, loss and the jitted ``update`` are the public file's,
unchanged. Lines changed (5): ``import xentdbg``, the ``@xentdbg.declare`` line, the ``__main__`` block became
``def setup(data)``, the training loop and printout gave way to the return line, and the
first layer size reads ``data.input_shape`` (784 for the flat layout).

The step is ``update(params, batch) -> params``: the state is the parameter list itself.
"""

import jax.numpy as np
import numpy.random as npr
from jax import grad, jit
from jax.scipy.special import logsumexp

import xentdbg


def init_random_params(scale, layer_sizes, rng=npr.RandomState(0)):  # noqa: B008 - the public code's default
    return [(scale * rng.randn(m, n), scale * rng.randn(n))
            for m, n, in zip(layer_sizes[:-1], layer_sizes[1:])]


def predict(params, inputs):
    activations = inputs
    for w, b in params[:-1]:
        outputs = np.dot(activations, w) + b
        activations = np.tanh(outputs)

    final_w, final_b = params[-1]
    logits = np.dot(activations, final_w) + final_b
    return logits - logsumexp(logits, axis=1, keepdims=True)


def loss(params, batch):
    inputs, targets = batch
    preds = predict(params, inputs)
    return -np.mean(preds * targets)


@xentdbg.declare(task="digits", pixels="unit", batch_size=128)
def setup(data):
    layer_sizes = [data.input_shape[0], 1024, 1024, 10]
    param_scale = 0.1
    step_size = 0.001

    @jit
    def update(params, batch):
        grads = grad(loss)(params, batch)
        return [(w - step_size * dw, b - step_size * db) for (w, b), (dw, db) in zip(params, grads)]

    params = init_random_params(param_scale, layer_sizes)
    return xentdbg.JaxStep(update, params, loss)
