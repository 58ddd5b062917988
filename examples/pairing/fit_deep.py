"""A deeper reference: three Dense(64, relu) layers, then Dense(10, softmax)."""

from common import fit, mlp


def setup(data):
    return fit(mlp(hidden=(64, 64, 64)))
