"""Cause 8, missing regularization, hidden behind a correct-looking loss.

Bug: the step computes the total loss, penalty included, and returns it (so its logged
loss matches ``fit``'s), but takes the gradient of the data loss:
``tape.gradient(loss, ...)`` instead of ``tape.gradient(total_loss, ...)``. The loss
phase agrees; the first divergence is the ``gradients`` of the regularized kernel at
step 0, by exactly ``2 * 1e-2 * W``; every other gradient agrees.

Fix: differentiate ``total_loss``.
"""

import keras
import tensorflow as tf

import xentdbg

from common import L2, build, sgd


def setup(data):
    model, optimizer = build(L2), sgd()
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            total_loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)  # BUG: should be total_loss
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total_loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
