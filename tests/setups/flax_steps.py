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


class NnxMLP:
    """Dense 32, BatchNorm, ReLU, Dropout 0.1, Dense(classes) in flax.nnx (built lazily: nnx
    is imported only by the setups that use it)."""

    @staticmethod
    def build(data, seed=0):
        from flax import nnx

        class Model(nnx.Module):
            def __init__(self, rngs):
                self.dense = nnx.Linear(data.input_shape[0], 32, rngs=rngs)
                self.bn = nnx.BatchNorm(32, rngs=rngs)
                self.dropout = nnx.Dropout(0.1, rngs=rngs)
                self.out = nnx.Linear(32, data.y.shape[1], rngs=rngs)

            def __call__(self, x):
                return self.out(self.dropout(nnx.relu(self.bn(self.dense(x)))))

        return Model(nnx.Rngs(seed))


def _nnx(data, momentum_of_bn=None):
    from flax import nnx

    model = NnxMLP.build(data)
    if momentum_of_bn is not None:
        model.bn.momentum = momentum_of_bn
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    def loss_fn(model, batch):
        x, y = batch
        logits = model(x)
        return optax.softmax_cross_entropy(logits, y).mean(), logits

    @nnx.jit
    def train_step(model, optimizer, batch):
        (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
        optimizer.update(model, grads)
        return loss

    return xentdbg.NnxStep(model, optimizer, train_step, loss_fn)


def nnx_adam(data):
    return _nnx(data)


def nnx_adam_bn_momentum(data):
    """The same with BatchNorm's momentum 0.9 for the default 0.99."""
    return _nnx(data, momentum_of_bn=0.9)
