"""A ``tf.GradientTape`` loop whose step returns ``(loss, predictions)``, as many public
examples do (the keras-io custom-training-loop guide returns extras for metrics). xentdbg
takes the first element as the loss; the training is fit's, so the pair agrees."""

import keras
import tensorflow as tf

import xentdbg

from common import build


def setup(data):
    model = build()
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            loss = loss_fn(y, predictions)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, predictions

    return xentdbg.KerasLoop(model, train_step, optimizer)
