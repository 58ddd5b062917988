"""``bench/setups/sizes.py``'s models as a user trains them, without xentdbg: ``model.fit``
(no shuffle) or the same custom ``tf.function`` loop over consecutive batches.

Usage: python bench/plain/sizes.py convnet|mlp fit|loop STEPS SUBSET BATCH [--save FILE.npz]
"""

import math
import sys

import keras
import numpy as np
import tensorflow as tf
from _mnist import batches, load, save_option

argv, save = save_option(sys.argv)
name, kind = argv[1], argv[2]
steps, subset, batch = (int(a) for a in argv[3:6])
x, y = load(subset, "digits", "unit")
if name == "convnet":
    x = x.reshape(-1, 28, 28, 1)
keras.utils.set_random_seed(0)
if name == "convnet":
    layers = [keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Conv2D(64, 3, activation="relu"),
              keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
              keras.layers.Dense(10, activation="softmax")]
    optimizer = keras.optimizers.Adam(1e-3)
else:
    layers = [keras.layers.Dense(2048, activation="relu") for _ in range(3)]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    optimizer = keras.optimizers.SGD(0.01)
model = keras.Sequential([keras.Input(x.shape[1:]), *layers])
if kind == "fit":
    model.compile(optimizer, "categorical_crossentropy")
    per_epoch = math.ceil(subset / batch)
    epochs, rest = divmod(steps, per_epoch)
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
    if rest:  # the first batches of one more epoch
        model.fit(x[:rest * batch], y[:rest * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)
else:
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for part in batches(steps, batch, subset):
        train_step(tf.constant(x[part]), tf.constant(y[part]))
if save:
    np.savez(save, *[np.asarray(v) for v in model.trainable_variables])
