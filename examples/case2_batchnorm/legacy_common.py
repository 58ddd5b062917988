"""Case 2 in TF1 style: tf_keras in graph mode, a K.function step, a legacy optimizer.

Needs the legacy extra (pip install 'xentdbg[legacy]')."""

import tensorflow as tf

import xentdbg


def legacy(feed_learning_phase: bool, with_model_updates: bool):
    tf.compat.v1.disable_eager_execution()  # process-global: xentdbg runs this side in its own worker
    import tf_keras
    from tf_keras import backend as K

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.Input((784,)),
        tf_keras.layers.Dense(64),
        tf_keras.layers.BatchNormalization(),
        tf_keras.layers.ReLU(),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])
    y_true = K.placeholder(shape=(None, 10))
    loss = K.mean(tf_keras.losses.categorical_crossentropy(y_true, model.output))
    optimizer = tf_keras.optimizers.legacy.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    updates = optimizer.get_updates(loss, model.trainable_weights)
    if with_model_updates:
        updates += model.updates  # BatchNormalization's moving mean/variance assignments
    if feed_learning_phase:
        train = K.function([model.input, y_true, xentdbg.legacy_learning_phase()], [loss], updates=updates)
        return xentdbg.LegacyKerasFunction(model, train, feed=lambda x, y: [x, y, True])
    train = K.function([model.input, y_true], [loss], updates=updates)
    return xentdbg.LegacyKerasFunction(model, train)
