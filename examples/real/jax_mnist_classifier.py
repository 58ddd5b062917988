"""JAX's examples/mnist_classifier.py (stax and jax.example_libraries.optimizers), as a setup.

Source: https://github.com/jax-ml/jax/blob/main/examples/mnist_classifier.py (Apache-2.0).
Model, loss, optimizer and the jitted ``update`` are the public file's, unchanged. Lines
changed to wrap it (5): ``import xentdbg``, the ``@xentdbg.declare`` line (the example's
data: flat images in [0, 1], one-hot digits, batch 128), the ``__main__`` block became
``def setup(data)``, ``init_random_params`` takes ``data.input_shape`` for
``(-1, 28 * 28)``, and the training loop and printout gave way to the return line
(``layers=`` hands xentdbg the ``stax.serial`` pair for per-layer outputs). Not counted:
the imports read ``jax.example_libraries`` for ``jax.experimental``, where stax and
optimizers live since JAX 0.2.25, as any user of a current JAX must change them; the
setup body sits in ``_setup`` so that ``fixed`` can share it.

``fixed`` is the same file with the loss summed over classes, as Keras'
``categorical_crossentropy`` computes it (the public loss is a mean over the 10 classes
too: ``-np.mean(preds * targets)``, a tenth of the cross-entropy).
"""

import jax.numpy as np
from jax import grad, jit, random
from jax.example_libraries import optimizers, stax
from jax.example_libraries.stax import Dense, LogSoftmax, Relu

import xentdbg


def loss(params, batch):
    inputs, targets = batch
    preds = predict(params, inputs)
    return -np.mean(preds * targets)


def summed_loss(params, batch):
    inputs, targets = batch
    preds = predict(params, inputs)
    return -np.mean(np.sum(preds * targets, axis=1))


init_random_params, predict = stax.serial(
    Dense(1024), Relu, Dense(1024), Relu, Dense(10), LogSoftmax)


def _setup(data, loss):
    rng = random.PRNGKey(0)

    step_size = 0.001
    momentum_mass = 0.9

    opt_init, opt_update, get_params = optimizers.momentum(step_size, mass=momentum_mass)

    @jit
    def update(i, opt_state, batch):
        params = get_params(opt_state)
        return opt_update(i, grad(loss)(params, batch), opt_state)

    _, init_params = init_random_params(rng, (-1, *data.input_shape))
    opt_state = opt_init(init_params)
    return xentdbg.JaxStep.from_optimizers(update, opt_state, get_params, loss, layers=(init_random_params, predict))


@xentdbg.declare(task="digits", pixels="unit", batch_size=128)
def setup(data):
    return _setup(data, loss)


@xentdbg.declare(task="digits", pixels="unit", batch_size=128)
def fixed(data):
    return _setup(data, summed_loss)
