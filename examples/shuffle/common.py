"""Shared pieces of the data-order examples: one small network, fit and an in-order loop.

Network: Dense(64, relu) - Dense(10, softmax), Keras seed 0, categorical cross-entropy,
SGD(0.1) (the network of examples/causes, repeated here: examples stand alone).
"""

import keras
import tensorflow as tf

import xentdbg

LEARNING_RATE = 0.1


def build(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def fit(loss="categorical_crossentropy", **fit_kwargs):
    """``model.compile(SGD(0.1), loss)`` then ``model.fit(**fit_kwargs)`` (fit shuffles
    unless ``shuffle=False``)."""
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE), loss=loss)
    return xentdbg.KerasFit(model, **fit_kwargs)


def loop():
    """A GradientTape loop over the batches in order, the same loss and optimizer."""
    model, optimizer = build(), keras.optimizers.SGD(learning_rate=LEARNING_RATE)
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
