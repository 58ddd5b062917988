"""The reference: ``model.fit`` on Dense(64, relu) - Dense(10, softmax)."""

from common import fit, mlp


def setup(data):
    return fit(mlp())
