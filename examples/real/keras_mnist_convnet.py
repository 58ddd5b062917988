"""keras-io's "Simple MNIST convnet" (examples/vision/mnist_convnet.py), as a setup.

Source: https://github.com/keras-team/keras-io/blob/master/examples/vision/mnist_convnet.py
(Apache-2.0). The model, the compile call and the fit arguments are the public file's.
Lines changed to wrap it (5): ``import xentdbg``, the ``@xentdbg.declare`` line (28x28x1
images in [0, 1], one-hot labels, batch 128: what the example's data preparation
produces, so its ``input_shape = (28, 28, 1)`` stays), ``def setup(data)``,
``keras.utils.set_random_seed(0)`` (so that Dropout draws the masks the loop draws), and ``model.fit(x_train, y_train,
batch_size=batch_size, epochs=epochs, validation_split=0.1)`` became the return line
(xentdbg passes ``x``, ``y``, ``batch_size`` and ``epochs``; ``validation_split`` goes
through unchanged, and ``fit`` shuffles, as in the example).

``in_order`` is the same fit on every sample in stored order (``shuffle=False``, no
validation split): what a hand-written loop over the same batches does.
"""

from tensorflow import keras
from tensorflow.keras import layers

import xentdbg


def _model(data):
    num_classes = 10
    input_shape = (28, 28, 1)

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="onehot", batch_size=128)
def setup(data):
    keras.utils.set_random_seed(0)
    return xentdbg.KerasFit(_model(data), validation_split=0.1)


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="onehot", batch_size=128)
def in_order(data):
    keras.utils.set_random_seed(0)
    return xentdbg.KerasFit(_model(data), shuffle=False)
