"""Case 1, Keras side: model.fit with binary_crossentropy on sigmoid outputs.

Keras 3 on the TensorFlow backend finds the logits behind the sigmoid
(``output._keras_logits``) and computes the loss with
``tf.nn.sigmoid_cross_entropy_with_logits``; on the JAX backend it clips the
probabilities to [1e-7, 1 - 1e-7] instead.
"""

import keras

import xentdbg


def setup(data):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Dense(1000, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="binary_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)
