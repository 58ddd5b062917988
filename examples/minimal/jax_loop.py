import jax
import optax
from jax.example_libraries import stax

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    layers = [stax.Dense(32), stax.Relu, stax.Dense(10)]
    init, apply = stax.serial(*layers)
    _, params = init(jax.random.PRNGKey(0), (-1, *data.input_shape))

    def loss_fn(params, x, y):
        return optax.softmax_cross_entropy(apply(params, x), y).mean()

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.1), layers=layers)
