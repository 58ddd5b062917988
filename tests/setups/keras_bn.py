"""A Keras model with everything capture could disturb: BatchNorm (moving statistics,
gamma), Dropout (RNG state), an L2 regularizer (model.losses), Nesterov momentum."""

import keras

import xentdbg


def setup(data):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Dense(32, kernel_regularizer=keras.regularizers.L2(1e-3)),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(data.y.shape[1], activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def shuffled(data):
    """The same model trained with fit's default shuffle=True."""
    fit = setup(data)
    fit.fit_kwargs.pop("shuffle")
    return fit
