"""Cause 8, missing regularization: the loop never adds ``model.losses``.

Bug: the model declares ``kernel_regularizer=L2(1e-2)``, but a hand-written loop only
gets the penalty if it adds ``model.losses`` to the loss itself; ``fit`` does that for
you. Here the step differentiates the cross-entropy alone, so the regularized kernel's
gradient lacks ``2 * 1e-2 * W``; biases and the unregularized output layer are not
affected. Because ``fit``'s loss includes the penalty, xentdbg's first divergence is
the ``loss`` at step 0 (difference exactly ``1e-2 * sum(W**2)``), and in the same step
only ``dense/kernel``'s gradient diverges.

Fix: ``loss = loss_fn(y, y_pred) + tf.add_n(model.losses)`` inside the tape (loop_l2.py).
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
            loss = loss_fn(y, model(x, training=True))  # BUG: + tf.add_n(model.losses) missing
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
