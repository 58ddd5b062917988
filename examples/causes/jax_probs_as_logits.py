"""Cause 13, probabilities passed to a loss that expects logits (softmax applied twice).

Bug: the port gives ``optax.softmax_cross_entropy`` the network's output, which already
ends in ``stax.Softmax``, so the loss applies a second softmax: its value is the
cross-entropy of ``softmax(p)``, which xentdbg recomputes from the captured output. (The
same mistake in Keras on TensorFlow goes unnoticed: with ``from_logits=True`` on a
softmax output, Keras warns and takes the logits cached on the output anyway.)

Fix: give the loss the logits (the network without its final softmax).
"""

import optax

from common import LEARNING_RATE
from jax_common import jax_loop


def setup(data):
    return jax_loop(optax.sgd(LEARNING_RATE), probs_as_logits=True)
