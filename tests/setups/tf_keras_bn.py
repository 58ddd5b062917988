"""The model of keras_bn.py written with ``tf.keras``: Keras 2 (tf_keras) when the
process sets ``TF_USE_LEGACY_KERAS=1``, else Keras 3. BatchNorm (moving statistics,
gamma), Dropout (tf_keras: legacy stateful random ops), an L2 regularizer
(model.losses), Nesterov momentum; trained by fit, a compiled loop and an eager loop."""

import tensorflow as tf

import xentdbg


def build_model(data, seed: int, dropout: float = 0.2):
    """Dense(32, L2) -> BatchNorm -> ReLU -> Dropout -> Dense softmax, seeded with ``seed``."""
    tf.keras.utils.set_random_seed(seed)
    layers = [tf.keras.Input(data.input_shape),
              tf.keras.layers.Dense(32, kernel_regularizer=tf.keras.regularizers.L2(1e-3)),
              tf.keras.layers.BatchNormalization(),
              tf.keras.layers.ReLU()]
    if dropout:
        layers.append(tf.keras.layers.Dropout(dropout))
    layers.append(tf.keras.layers.Dense(data.y.shape[1], activation="softmax"))
    return tf.keras.Sequential(layers)


def setup(data):
    model = build_model(data, 3)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def sgd(data):
    """Plain SGD(0.01) and no regularizer or Dropout: ``w1 = w0 - lr * g`` exactly."""
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([tf.keras.Input(data.input_shape), tf.keras.layers.Dense(32, activation="relu"),
                                 tf.keras.layers.Dense(data.y.shape[1], activation="softmax")])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def _loop(data, compiled: bool, dropout: float = 0.2):
    model = build_model(data, 5, dropout)
    optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    loss_fn = tf.keras.losses.CategoricalCrossentropy()

    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, tf.function(train_step) if compiled else train_step, optimizer)


def compiled(data):
    return _loop(data, compiled=True)


def eager(data):
    """An eager step: without Dropout (tf_keras's eager random ops cannot be replayed)."""
    return _loop(data, compiled=False, dropout=0.0)
