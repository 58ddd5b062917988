"""Cause 14, a hand-written cross-entropy: ``-sum(y * log(p + 1e-8))`` on the softmax output.

Bug: the port writes the textbook formula with an epsilon "for safety". Where
predictions saturate (raw pixels, ``--pixels raw``: logits in the hundreds), ``p`` is 0
in float32 for most wrong classes and 1e-8 replaces it, so the loss and its gradients
differ from the exact cross-entropy on the logits that fit computes. xentdbg recomputes
``-mean(y log(p + eps))`` from the captured output and finds the epsilon.

Fix: compute the loss from the logits (``optax.softmax_cross_entropy``).
"""

import optax

from common import LEARNING_RATE
from jax_common import jax_loop


def setup(data):
    return jax_loop(optax.sgd(LEARNING_RATE), log_eps=1e-8)
