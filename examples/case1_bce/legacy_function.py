"""Case 1 in TF1 style: tf_keras in graph mode, K.function, legacy SGD.

tf_keras' binary_crossentropy also recovers the logits when the output op is a Sigmoid.
Needs the legacy extra (pip install 'xentdbg[legacy]')."""

import tensorflow as tf

import xentdbg


def setup(data):
    tf.compat.v1.disable_eager_execution()
    import tf_keras
    from tf_keras import backend as K

    tf_keras.utils.set_random_seed(1)
    model = tf_keras.Sequential([
        tf_keras.Input(data.input_shape),
        tf_keras.layers.Dense(1000, activation="relu"),
        tf_keras.layers.Dense(1, activation="sigmoid"),
    ])
    y_true = K.placeholder(shape=(None, 1))
    loss = K.mean(tf_keras.losses.binary_crossentropy(y_true, model.output))
    updates = tf_keras.optimizers.legacy.SGD(learning_rate=0.01).get_updates(loss, model.trainable_weights)
    return xentdbg.LegacyKerasFunction(model, K.function([model.input, y_true], [loss], updates=updates))
