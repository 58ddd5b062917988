"""Case 1's Keras side as a user runs it: ``model.fit`` of ``examples/case1_bce/keras_fit.py``'s
model (Dense 1000 ReLU, Dense 1 sigmoid, SGD 0.01, binary cross-entropy, seed 1), no
shuffle, ``steps`` batches. Imports no xentdbg.

Usage: python bench/plain/keras_fit.py STEPS SUBSET BATCH [PIXELS] [--save FILE.npz]
"""

import math
import sys

import keras
import numpy as np
from _mnist import load, save_option

argv, save = save_option(sys.argv)
steps, subset, batch = (int(a) for a in argv[1:4])
pixels = argv[4] if len(argv) > 4 else "raw"
x, y = load(subset, "binary", pixels)
keras.utils.set_random_seed(1)
model = keras.Sequential([
    keras.Input(x.shape[1:]),
    keras.layers.Dense(1000, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="binary_crossentropy")
per_epoch = math.ceil(subset / batch)
epochs, rest = divmod(steps, per_epoch)
model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
if rest:  # the first batches of one more epoch
    model.fit(x[:rest * batch], y[:rest * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)
if save:
    np.savez(save, *[np.asarray(v) for v in model.trainable_variables])
