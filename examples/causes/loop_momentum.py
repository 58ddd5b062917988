"""Cause 9b, optimizer variant: the port uses plain momentum where fit used Nesterov.

Bug: the original is ``SGD(0.1, momentum=0.9, nesterov=True)``; the port drops
``nesterov=True`` (``optax.sgd(0.1, momentum=0.9)`` and ``torch.optim.SGD(...,
momentum=0.9)`` also default to plain momentum). Gradients agree at step 0; the update
does not: from zero velocity, Keras's Nesterov step is ``-(1 + momentum) * lr * g``
and plain momentum's is ``-lr * g``, a ratio of exactly 1.9.

Fix: ``nesterov=True`` (``optax.sgd(..., nesterov=True)``).
"""

import keras
import tensorflow as tf

import xentdbg

from common import LEARNING_RATE, build


def setup(data):
    model = build()
    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=0.9)  # BUG: nesterov=True missing
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
