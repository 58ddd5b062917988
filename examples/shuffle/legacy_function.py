"""The network of common.py in TF1 style, batches in order: tf_keras in graph mode,
``K.function`` with the legacy SGD(0.1) updates. Needs the legacy extra
(pip install 'xentdbg[legacy]').

Its step's weight update happens inside the user's ``K.function``, so the re-run on the
other side's batch gives loss, gradients and layer outputs only: the report says the
weights could not be re-run there."""

import tensorflow as tf

import xentdbg


def setup(data):
    tf.compat.v1.disable_eager_execution()
    import tf_keras
    from tf_keras import backend as K

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.Input(data.input_shape),
        tf_keras.layers.Dense(64, activation="relu"),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])
    y_true = K.placeholder(shape=(None, 10))
    loss = K.mean(tf_keras.losses.categorical_crossentropy(y_true, model.output))
    updates = tf_keras.optimizers.legacy.SGD(learning_rate=0.1).get_updates(loss, model.trainable_weights)
    return xentdbg.LegacyKerasFunction(model, K.function([model.input, y_true], [loss], updates=updates))
