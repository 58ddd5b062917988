"""The Keras equivalent of Flax's MNIST CNN (examples/real/flax_mnist_cnn.py), as a user
porting it would write it: Conv 32 and Conv 64 (3x3; Flax's ``nn.Conv`` pads ``SAME``
by default, Keras' ``Conv2D`` ``valid``, so ``padding="same"``), 2x2 average pooling,
Dense 256, Dense 10 logits; SGD 0.1 with momentum 0.9; sparse categorical cross-entropy
from logits; ``model.fit`` without shuffling.
"""

import keras

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="sparse", batch_size=128)
def setup(data):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        keras.layers.AveragePooling2D((2, 2), strides=(2, 2)),
        keras.layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
        keras.layers.AveragePooling2D((2, 2), strides=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return xentdbg.KerasFit(model, shuffle=False)
