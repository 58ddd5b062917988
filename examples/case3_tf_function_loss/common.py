"""Case 3: Dense(10, softmax) trained on a class-weighted cross-entropy.

``loss = mean(categorical_crossentropy(y * w, y_pred))`` with ``w`` 1 for every class but
0.1 for class 0, so weighted label rows do not sum to 1. Undecorated, Keras finds the
logits behind the softmax (``_keras_logits``) and uses TensorFlow's fused softmax
cross-entropy, whose gradient ``softmax - labels`` assumes rows sum to 1
(tensorflow/python/ops/nn_grad.py ~L514). Decorated with tf.function, the loss sees a
placeholder without logits and takes the clipped-probability path: the loss value is
the same, the gradient differs (and is the correct one)."""

import keras
import numpy as np
import tensorflow as tf

import xentdbg

CLASS_WEIGHTS = np.array([0.1] + [1.0] * 9, np.float32)


def weighted_xent(y, y_pred):
    return tf.reduce_mean(keras.losses.categorical_crossentropy(y * CLASS_WEIGHTS, y_pred))


def build(loss):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    optimizer = keras.optimizers.SGD(learning_rate=0.1)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return value

    return xentdbg.KerasLoop(model, train_step, optimizer)
