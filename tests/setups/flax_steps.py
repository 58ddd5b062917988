"""Flax linen setups: a TrainState trained by the user's own step, as Flax's MNIST example writes it
(``apply_model`` computes the gradients, ``state.apply_gradients`` applies them)."""

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state

import xentdbg


class MLP(nn.Module):
    """Dense 32, ReLU, Dense(classes): the Keras model in ``keras_mlp`` below, in linen."""

    classes: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(32)(x)
        x = nn.relu(x)
        x = nn.Dense(self.classes)(x)
        return x


def _state(data, tx):
    model = MLP(data.y.shape[1])
    params = model.init(jax.random.PRNGKey(0), jnp.ones((1, *data.input_shape)))["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def _step_and_loss(state):
    def loss_fn(params, batch):
        x, y = batch
        return optax.softmax_cross_entropy(state.apply_fn({"params": params}, x), y).mean()

    @jax.jit
    def train_step(state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
        return state.apply_gradients(grads=grads), loss

    return train_step, loss_fn


def linen_sgd(data):
    state = _state(data, optax.sgd(0.1, momentum=0.9))
    step, loss = _step_and_loss(state)
    return xentdbg.JaxStep(step, state, loss)


def keras_mlp(data):
    import keras

    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(data.y.shape[1], activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)
