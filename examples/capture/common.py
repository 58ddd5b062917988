"""Shared pieces of the capture examples: the causes/ network with a BatchNormalization
layer (its call reads ``training``, so xentdbg records the flag each step)."""

import keras

import xentdbg


def build():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(64),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def fit(**fit_kwargs):
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False, **fit_kwargs)
