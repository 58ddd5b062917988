"""The Keras equivalent of JAX's examples/mnist_classifier.py, as a user would write it:
the same layers (Dense 1024, ReLU, Dense 1024, ReLU, Dense 10, softmax), SGD with
momentum 0.9 at 0.001, categorical cross-entropy, ``model.fit`` without shuffling."""

import keras

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", batch_size=128)
def setup(data):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Dense(1024, activation="relu"),
        keras.layers.Dense(1024, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(0.001, momentum=0.9), "categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)
