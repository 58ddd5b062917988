"""Clean port of fit_l2.py: the loop adds ``model.losses`` inside the tape, as ``fit`` does.

``xentdbg compare fit_l2.py loop_l2.py`` finds no divergence."""

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
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
