"""Cause 6b, different data: preprocessing applied twice (on one side only).

Bug: the original pipeline already scales pixels to 0..1 before ``fit`` (the data here
is ``--pixels unit``). The port copies ``x / 255`` from a tf.data tutorial into its
train step, so its network sees pixels in 0..1/255. xentdbg fingerprints the batch a
side is *given*, which is identical, so ``inputs`` match; the first divergence is the
first layer's output at step 0, exactly 1/255 of fit's (the hidden bias starts at 0).

Fix: normalise in exactly one place (delete the ``x / 255.0`` line, or feed raw pixels).
"""

import keras
import tensorflow as tf

import xentdbg

from common import build, sgd


def setup(data):
    model, optimizer = build(), sgd()
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        x = tf.cast(x, tf.float32) / 255.0  # BUG: the data is already in 0..1
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
