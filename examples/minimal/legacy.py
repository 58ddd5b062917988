import tensorflow as tf

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    tf.compat.v1.disable_eager_execution()  # TF1 graph mode; xentdbg runs this side in its own worker
    import tf_keras
    from tf_keras import backend as K

    model = tf_keras.Sequential([tf_keras.Input(data.input_shape),
                                 tf_keras.layers.Dense(32, activation="relu"),
                                 tf_keras.layers.Dense(10, activation="softmax")])
    y_true = K.placeholder(shape=(None, 10))
    loss = K.mean(tf_keras.losses.categorical_crossentropy(y_true, model.output))
    optimizer = tf_keras.optimizers.legacy.SGD(learning_rate=0.1)
    updates = optimizer.get_updates(loss, model.trainable_weights) + model.updates
    train = K.function([model.input, y_true, xentdbg.legacy_learning_phase()], [loss], updates=updates)
    return xentdbg.LegacyKerasFunction(model, train, feed=lambda x, y: [x, y, True])
