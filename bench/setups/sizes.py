"""The bench's models at realistic sizes, each as ``model.fit`` and as a custom Keras loop
of the same model (a clean pair: the port a user checks), for ``bench.py --only sizes``.
``bench/plain/sizes.py`` trains the same without xentdbg.

- ``convnet``: Keras's MNIST convnet (Conv 32, Conv 64, max pool, Dense 128, Dense 10),
  1,199,882 parameters, inputs 28x28x1, Adam 1e-3;
- ``mlp``: 784 -> 2048 -> 2048 -> 2048 -> 10 ReLU, 10,020,874 parameters, SGD 0.01.
"""

import keras
import tensorflow as tf

import xentdbg


def build(name: str, input_shape) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """The model (seed 0) and its optimizer, as ``bench/plain/sizes.py`` builds them."""
    keras.utils.set_random_seed(0)
    if name == "convnet":
        layers = [keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Conv2D(64, 3, activation="relu"),
                  keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                  keras.layers.Dense(10, activation="softmax")]
        optimizer: keras.optimizers.Optimizer = keras.optimizers.Adam(1e-3)
    else:
        layers = [keras.layers.Dense(2048, activation="relu") for _ in range(3)]
        layers.append(keras.layers.Dense(10, activation="softmax"))
        optimizer = keras.optimizers.SGD(0.01)
    return keras.Sequential([keras.Input(input_shape), *layers]), optimizer


def _fit(name: str, data):
    model, optimizer = build(name, data.input_shape)
    model.compile(optimizer, "categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def _loop(name: str, data):
    model, optimizer = build(name, data.input_shape)
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", batch_size=64)
def convnet_fit(data):
    return _fit("convnet", data)


@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", batch_size=64)
def convnet_loop(data):
    return _loop("convnet", data)


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def mlp_fit(data):
    return _fit("mlp", data)


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def mlp_loop(data):
    return _loop("mlp", data)
