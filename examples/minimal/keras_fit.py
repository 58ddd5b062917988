import keras

import xentdbg


@xentdbg.declare(task="digits", pixels="unit", batch_size=100)
def setup(data):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(data.input_shape),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)
