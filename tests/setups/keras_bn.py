"""A Keras model with everything capture could disturb: BatchNorm (moving statistics,
gamma), Dropout (RNG state), an L2 regularizer (model.losses), Nesterov momentum."""

import keras

import xentdbg


def build_model(data, seed: int, lib=keras, dropout: float = 0.2):
    """Dense(32, L2) -> BatchNorm -> ReLU -> Dropout -> Dense softmax, built with ``lib``
    (``keras``, or ``tf.keras``: tf_keras_bn.py) after seeding it with ``seed`` (also used
    by keras_loops.py and evaluate_check.py); no Dropout when ``dropout`` is 0."""
    lib.utils.set_random_seed(seed)
    return lib.Sequential([
        lib.Input(data.input_shape),
        lib.layers.Dense(32, kernel_regularizer=lib.regularizers.L2(1e-3)),
        lib.layers.BatchNormalization(),
        lib.layers.ReLU(),
        *([lib.layers.Dropout(dropout)] if dropout else []),
        lib.layers.Dense(data.y.shape[1], activation="softmax"),
    ])


def setup(data):
    model = build_model(data, 3)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)


def shuffled(data):
    """The same model trained with fit's default shuffle=True."""
    fit = setup(data)
    fit.fit_kwargs.pop("shuffle")
    return fit
