"""JaxStep setups beyond examples/real: an optax step on a dict state, with and without
``donate_argnums``, and a step returning ``(state, metrics)``."""

import jax
import jax.numpy as jnp
import optax

import xentdbg


def _init(data):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"dense": {"w": 0.01 * jax.random.normal(k1, (data.input_shape[0], 32)), "b": jnp.zeros(32)},
            "out": {"w": 0.01 * jax.random.normal(k2, (32, data.y.shape[1])), "b": jnp.zeros(data.y.shape[1])}}


def loss_fn(params, x, y):
    h = jax.nn.relu(x @ params["dense"]["w"] + params["dense"]["b"])
    logits = h @ params["out"]["w"] + params["out"]["b"]
    return optax.softmax_cross_entropy(logits, y).mean()


def _optax(data, donate: bool):
    tx = optax.adam(1e-3)
    params = _init(data)
    state = {"params": params, "opt": tx.init(params), "count": jnp.zeros((), jnp.int32)}

    def step(state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], x, y)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt": opt, "count": state["count"] + 1}
        return new, {"loss": loss}

    step = jax.jit(step, donate_argnums=0) if donate else jax.jit(step)
    return xentdbg.JaxStep(step, state, loss_fn, params=lambda s: s["params"])


def optax_dict(data):
    return _optax(data, donate=False)


def optax_donated(data):
    return _optax(data, donate=True)


def stax_cnn(data):
    """A stax convnet: it needs (N, 28, 28, 1) images (--layout 28x28x1)."""
    from jax.example_libraries import stax

    init, apply = stax.serial(stax.Conv(4, (3, 3)), stax.Relu, stax.Flatten, stax.Dense(data.y.shape[1]))
    _, params = init(jax.random.PRNGKey(0), (-1, 28, 28, 1))

    def loss(params, x, y):
        return optax.sigmoid_binary_cross_entropy(apply(params, x), y).mean()

    return xentdbg.JaxLoop(params, loss, optax.sgd(0.1))
