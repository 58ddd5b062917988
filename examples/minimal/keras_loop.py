import keras
import tensorflow as tf

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(data.input_shape),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)
