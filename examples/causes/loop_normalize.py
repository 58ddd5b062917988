"""Cause 6d, affine input normalization on one side: ``(x - 0.1307) / 0.3081`` inside the step.

Bug: the port copies MNIST's usual normalization (mean 0.1307, std 0.3081) into its train
step, while the reference (``fit.py``) feeds the pixels as they are. xentdbg fingerprints
the batch a side is *given*, which is identical, so ``inputs`` match; from the same
weights the first Dense layer's pre-activations of B are A's times 1/0.3081 plus a shift
per unit, ``-m/s * sum_i W_ij + b_j (1 - 1/s)``, which gives back ``m`` and ``s``.

Fix: normalize in exactly one place.
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
        x = (tf.cast(x, tf.float32) - 0.1307) / 0.3081  # BUG: fit.py feeds the pixels as they are
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
