"""Case 2 network: Dense(64)-BatchNormalization-ReLU-Dense(10, softmax), SGD(0.1, momentum 0.9, Nesterov).

Run with: --task digits --batch-size 100 (and --pixels unit as in the reference, or raw)."""

import keras


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(64),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    return model, optimizer


def loop(training):
    """A GradientTape loop under tf.function; ``training`` is what it passes to model(x, ...)."""
    import tensorflow as tf

    import xentdbg

    model, optimizer = build()
    loss_fn = keras.losses.CategoricalCrossentropy()
    kwargs = {} if training is None else {"training": training}

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, **kwargs))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
