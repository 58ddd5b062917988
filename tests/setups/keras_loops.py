"""Hand-written Keras 3 loops over a model with BatchNorm, Dropout and an L2 regularizer,
eager and under tf.function, for the capture-neutrality tests."""

import keras
import tensorflow as tf
from keras_bn import build_model

import xentdbg


def loop(data, compiled: bool, lib=keras, dropout: float = 0.2):
    """The step over keras_bn.build_model, built with ``lib`` (``keras`` or ``tf.keras``)."""
    model = build_model(data, 5, lib, dropout)
    optimizer = lib.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    loss_fn = lib.losses.CategoricalCrossentropy()

    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, tf.function(train_step) if compiled else train_step, optimizer)


def eager(data):
    return loop(data, compiled=False)


def compiled(data):
    return loop(data, compiled=True)
