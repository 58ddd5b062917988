"""Small, fast JAX setups for error-path tests (JAX imports in ~0.5 s, TensorFlow in ~5 s)."""

import os
import signal

import jax.numpy as jnp
import optax
from jax.example_libraries import stax

import xentdbg

_calls = {"n": 0}


def _loop(data, hidden=16, loss_hook=None, seed=0):
    init, apply = stax.serial(stax.Dense(hidden), stax.Relu, stax.Dense(1), stax.Sigmoid)
    import jax

    _, params = init(jax.random.PRNGKey(seed), (-1, data.input_shape[0]))

    def loss_fn(params, x, y):
        if loss_hook:
            loss_hook()
        p = jnp.clip(apply(params, x), 1e-6, 1 - 1e-6)
        return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.01), jit=loss_hook is None)


def setup(data):
    return _loop(data)


def other_seed(data):
    return _loop(data, seed=1)


def wide(data):
    return _loop(data, hidden=32)


def raises_at_step_2(data):
    def hook():
        _calls["n"] += 1
        if _calls["n"] == 3:
            raise RuntimeError("boom in the user's loss")

    return _loop(data, loss_hook=hook)


def killed_at_step_1(data):
    def hook():
        _calls["n"] += 1
        if _calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    return _loop(data, loss_hook=hook)


def hangs_at_step_1(data):
    def hook():
        _calls["n"] += 1
        if _calls["n"] == 2:
            import time

            time.sleep(600)

    return _loop(data, loss_hook=hook)


def example_libraries_sgd(data):
    from jax.example_libraries import optimizers

    loop = _loop(data)
    loop.optimizer = optimizers.sgd(0.01)
    return loop


def _stateful(data, momentum):
    import jax

    init, apply = stax.serial(stax.Dense(16), stax.Relu, stax.Dense(1), stax.Sigmoid)
    _, params = init(jax.random.PRNGKey(0), (-1, data.input_shape[0]))

    def loss_fn(params, state, x, y):
        p = jnp.clip(apply(params, x), 1e-6, 1 - 1e-6)
        loss = -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
        batch_mean = jax.lax.stop_gradient(jnp.mean(x, axis=0))
        return loss, {"running_mean": momentum * state["running_mean"] + (1 - momentum) * batch_mean}

    state = {"running_mean": jnp.zeros(data.input_shape[0])}
    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.01), state=state)


def stateful(data):
    return _stateful(data, 0.99)


def stateful_other_momentum(data):
    return _stateful(data, 0.01)


def returns_nonsense(data):
    return "not a setup"


def raises_while_building(data):
    raise ValueError("cannot build the model")


def slow(data):
    """Sleeps 0.1 s inside every (jitted) step: long enough to interrupt or kill a run in the middle.

    With ``XENTDBG_TEST_PROGRESS`` set to a folder, each call of the loss (one per step)
    also appends a line to the file named by the process id there, so a test can wait for
    a number of steps instead of a guessed time."""
    import time

    import jax

    loop = _loop(data)
    loss_fn = loop.loss_fn
    progress = os.environ.get("XENTDBG_TEST_PROGRESS")

    def tick():
        if progress:
            with open(os.path.join(progress, str(os.getpid())), "a") as f:
                f.write("step\n")
        time.sleep(0.1)

    def sleepy(params, x, y):
        jax.debug.callback(tick)
        return loss_fn(params, x, y)

    loop.loss_fn = sleepy
    return loop


def noisy(data):
    """Run-to-run nondeterminism, as GPU atomics or unseeded threads give: every worker
    process scales each input feature by its own random factor within 0.5% (a different
    draw each run). Per feature, not one scalar: two processes' single draws can land
    close together and agree, but 784 independent draws never all do, so the noise two
    runs show is about the same every time."""
    import numpy as np

    jitter = (1 + 5e-3 * np.random.default_rng().uniform(-1, 1, data.input_shape)).astype(np.float32)
    init, apply = stax.serial(stax.Dense(16), stax.Relu, stax.Dense(1), stax.Sigmoid)
    import jax

    _, params = init(jax.random.PRNGKey(0), (-1, data.input_shape[0]))

    def loss_fn(params, x, y):
        p = jnp.clip(apply(params, x * jitter), 1e-6, 1 - 1e-6)
        return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.01))


def float64(data):
    """The same network with float64 parameters (run its worker with JAX_ENABLE_X64=1)."""
    import jax

    loop = _loop(data)
    loop.params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), loop.params)
    return loop
