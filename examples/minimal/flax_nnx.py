import optax
from flax import nnx

import xentdbg


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(784, 32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def loss_fn(model, x, y):
    return optax.softmax_cross_entropy(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    return xentdbg.NnxStep(model, optimizer, train_step, loss_fn)
