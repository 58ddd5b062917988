"""Keras 3 loops under tf.distribute.MirroredStrategy on 4 logical CPU devices, over
keras_bn.build_model (BatchNorm, Dropout, an L2 regularizer), for the capture-neutrality
tests: the replicas' BatchNorm copies part (per-replica statistics), Dropout draws in
every replica, the regularizer is added once per replica divided by the replica count."""

import keras
import tensorflow as tf
from keras_bn import build_model

import xentdbg

REPLICAS = 4


def strategy() -> tf.distribute.MirroredStrategy:
    """One strategy per process, kept across loads of this file: a second MirroredStrategy
    over the same devices restarts the collectives' instance keys, and TensorFlow then
    matches its all-reduces with the first one's (a shape mismatch error). A worker loads
    one setup; the neutrality checks load several in one process."""
    kept = getattr(tf.distribute, "_xentdbg_tests_strategy", None)
    if kept is not None:
        return kept
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) != REPLICAS:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)
    tf.distribute._xentdbg_tests_strategy = s = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
    return s


def loop(data, compiled: bool, momentum: float = 0.9, dropout: float = 0.2):
    s = strategy()
    with s.scope():
        model = build_model(data, 5, keras, dropout)
        optimizer = keras.optimizers.SGD(0.1, momentum=momentum, nesterov=momentum > 0)
        per_example = keras.losses.CategoricalCrossentropy(reduction="none")
        # built in the scope: Keras 3.15 fails to create SGD's momentum variables lazily
        # inside a tf.function under MirroredStrategy (the plain loop fails, xentdbg or not)
        optimizer.build(model.trainable_variables)

    def step_fn(x, y):
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(per_example(y, model(x, training=True)))
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def train_step(x, y):
        return s.reduce("SUM", s.run(step_fn, args=(x, y)), axis=None)

    return xentdbg.KerasLoop(model, tf.function(train_step) if compiled else train_step, optimizer, strategy=s)


def compiled(data):
    return loop(data, compiled=True)


def eager(data):
    return loop(data, compiled=False)


def sgd(data):
    """Plain SGD(0.1), no momentum, no Dropout: w1 = w0 - 0.1 * g for the applied g."""
    return loop(data, compiled=True, momentum=0.0, dropout=0.0)



def outside_scope(data):
    """The model built outside the strategy's scope: refused (it would train on one device)."""
    fine = loop(data, compiled=True, momentum=0.0, dropout=0.0)
    model = build_model(data, 5, keras, 0.0)
    return xentdbg.KerasLoop(model, fine.train_step, fine.optimizer, strategy=fine.strategy)


def not_a_strategy(data):
    fine = loop(data, compiled=True, momentum=0.0, dropout=0.0)
    return xentdbg.KerasLoop(fine.model, fine.train_step, fine.optimizer, strategy="mirrored")


def fit(data, momentum: float = 0.9, dropout: float = 0.2):
    """model.fit under the strategy (the model and optimizer built in its scope): fit splits
    each global batch over the replicas and sums their gradients itself."""
    s = strategy()
    with s.scope():
        model = build_model(data, 5, keras, dropout)
        model.compile(keras.optimizers.SGD(0.1, momentum=momentum, nesterov=momentum > 0),
                      "categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def fit_sgd(data):
    """fit under the strategy with plain SGD(0.1), no Dropout: w1 = w0 - 0.1 * g."""
    return fit(data, momentum=0.0, dropout=0.0)
