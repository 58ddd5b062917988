"""A loop that updates the weights by hand (``v.assign_sub(lr * g)``) instead of calling the
optimizer. It trains like SGD(0.1), but xentdbg captures gradients where the optimizer
receives them, so it cannot see them here: ``compare`` stops with exit 2 and says what to
change (or run with ``--fingerprint``, which does not capture gradients)."""

import keras
import tensorflow as tf

import xentdbg

from common import build


def setup(data):
    model = build()
    optimizer = keras.optimizers.SGD(0.1)  # passed to KerasLoop, never used by the step
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        for v, g in zip(model.trainable_variables, grads):
            v.assign_sub(0.1 * g)
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
