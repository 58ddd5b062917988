"""Cause 7, loss reduction: the port sums the per-sample losses instead of averaging.

Bug: ``keras.losses.categorical_crossentropy`` (the function) returns one loss per
sample; the port reduces it with ``tf.reduce_sum`` where ``fit`` (and the
``CategoricalCrossentropy()`` class, ``reduction="sum_over_batch_size"``) takes the mean.
Loss and every gradient are ``batch_size`` (100) times fit's, so SGD(0.1) behaves like
SGD(10). ``CategoricalCrossentropy(reduction="sum")`` is the same bug.

Fix: ``tf.reduce_mean`` (or divide by the batch size, or use the loss class with its
default reduction). xentdbg reports it in the ``loss`` phase of step 0, with a ratio of
exactly the batch size.
"""

import keras
import tensorflow as tf

import xentdbg

from common import build, sgd


def setup(data):
    model, optimizer = build(), sgd()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            per_sample = keras.losses.categorical_crossentropy(y, model(x, training=True))
            loss = tf.reduce_sum(per_sample)  # BUG: fit takes the mean
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
