"""The convnet of keras_mnist_convnet.py trained by a hand-written loop, as keras-io's
"Writing a training loop from scratch" guide writes it (a ``tf.function`` GradientTape
step, ``model(x, training=True)``, ``optimizer.apply_gradients``), with the example's
loss and optimizer (categorical cross-entropy on one-hot labels, Adam)."""

import tensorflow as tf
from tensorflow import keras

import xentdbg

from keras_mnist_convnet import _model


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="onehot", batch_size=128)
def setup(data):
    keras.utils.set_random_seed(0)
    model = _model(data)
    optimizer = keras.optimizers.Adam()
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss_value = loss_fn(y, logits)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return loss_value

    return xentdbg.KerasLoop(model, train_step, optimizer)
