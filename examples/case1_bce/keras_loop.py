"""Case 1 as a hand-written Keras 3 loop: GradientTape under tf.function, binary_crossentropy.

Like fit on the TensorFlow backend, the loss finds the logits behind the sigmoid."""

import keras
import tensorflow as tf

import xentdbg


def setup(data):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Dense(1000, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    optimizer = keras.optimizers.SGD(learning_rate=0.01)
    loss_fn = keras.losses.BinaryCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
