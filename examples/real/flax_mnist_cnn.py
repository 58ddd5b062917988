"""Flax's linen MNIST example (examples/mnist/train.py: CNN, apply_model, update_model), as a setup.

Source: https://github.com/google/flax/blob/main/examples/mnist/train.py (Apache-2.0).
``CNN``, ``apply_model``, ``update_model`` and ``create_train_state`` are the public
file's, unchanged; the config is its ``configs/default.py`` (learning rate 0.1, momentum
0.9, batch 128). Lines changed to wrap it (5): ``import xentdbg``, the ``@xentdbg.declare`` line (the example
feeds 28x28x1 images scaled to [0, 1] and integer labels), ``def setup(data)`` for
``train_and_evaluate``, the return line, whose step composes the example's two jitted
functions as its ``train_epoch`` does, and ``create_train_state`` takes the config values
directly.
"""

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state

import xentdbg


class CNN(nn.Module):
    """A simple CNN model."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=32, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(features=64, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))  # flatten
        x = nn.Dense(features=256)(x)
        x = nn.relu(x)
        x = nn.Dense(features=10)(x)
        return x


@jax.jit
def apply_model(state, images, labels):
    """Computes gradients, loss and accuracy for a single batch."""

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images)
        one_hot = jax.nn.one_hot(labels, 10)
        loss = jnp.mean(optax.softmax_cross_entropy(logits=logits, labels=one_hot))
        return loss, logits

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return grads, loss, accuracy


@jax.jit
def update_model(state, grads):
    return state.apply_gradients(grads=grads)


def create_train_state(rng, learning_rate, momentum):
    """Creates initial `TrainState`."""
    cnn = CNN()
    params = cnn.init(rng, jnp.ones([1, 28, 28, 1]))["params"]
    tx = optax.sgd(learning_rate, momentum)
    return train_state.TrainState.create(apply_fn=cnn.apply, params=params, tx=tx)


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="sparse", batch_size=128)
def setup(data):
    state = create_train_state(jax.random.PRNGKey(0), 0.1, 0.9)
    return xentdbg.JaxStep(lambda s, x, y: update_model(s, apply_model(s, x, y)[0]), state, grads_fn=apply_model)
