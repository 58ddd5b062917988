"""Clean port of fit.py: a GradientTape loop over the batches in order.

Same model, same loss (mean categorical cross-entropy), ``model(x, training=True)``,
SGD(0.1). ``xentdbg compare fit.py loop.py`` finds no divergence: every tensor is
bitwise equal over the 3 steps."""

import keras
import tensorflow as tf

import xentdbg

from common import build, sgd


def setup(data):
    model, optimizer = build(), sgd()
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
