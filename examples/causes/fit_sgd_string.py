"""Cause 9a, optimizer hyperparameter: ``compile(optimizer="sgd")`` means learning rate 0.01.

Bug: the original script compiles with the string ``"sgd"``, which builds
``keras.optimizers.SGD()`` at its default ``learning_rate=0.01``; the port (loop.py)
writes ``SGD(learning_rate=0.1)``, the rate everyone assumed. Loss and gradients agree
at step 0; the weights after it do not: each update is 10x fit's.

Fix: spell the optimizer out on both sides, ``keras.optimizers.SGD(learning_rate=...)``
with the same value.
"""

from common import fit


def setup(data):
    return fit(optimizer="sgd", shuffle=False)
