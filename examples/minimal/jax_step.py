import jax
import optax
from jax.example_libraries import stax

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    init, apply = stax.serial(stax.Dense(32), stax.Relu, stax.Dense(10))
    _, params = init(jax.random.PRNGKey(0), (-1, *data.input_shape))
    tx = optax.sgd(0.1)

    def loss_fn(params, x, y):
        return optax.softmax_cross_entropy(apply(params, x), y).mean()

    @jax.jit
    def train_step(state, x, y):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return xentdbg.JaxStep(train_step, (params, tx.init(params)), loss_fn, params=lambda state: state[0])
