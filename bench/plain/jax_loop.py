"""Case 1's JAX side as a user runs it: a jitted value_and_grad + optax SGD loop over the
stax network of ``examples/case1_bce/common.py`` (its own helper, which imports no
xentdbg), with the loss of ``jax_stable.py`` (``stable``: clipped probabilities turned
back into logits) or ``jax_logits.py`` (``logits``: exact BCE on the logits).

Usage: python bench/plain/jax_loop.py stable|logits STEPS SUBSET BATCH [PIXELS] [--save FILE.npz]
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _mnist import batches, load, save_option

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "case1_bce"))
from common import LEARNING_RATE, init_params, logits_fn, probs_fn  # noqa: E402

argv, save = save_option(sys.argv)
form = argv[1]
steps, subset, batch = (int(a) for a in argv[2:5])
pixels = argv[5] if len(argv) > 5 else "raw"
x, y = load(subset, "binary", pixels)

if form == "stable":
    apply = probs_fn()

    def loss_fn(params, x, y):
        p = jnp.clip(apply(params, x), 1e-6, 0.9999999)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(jnp.log(p) - jnp.log1p(-p), y))
else:
    logits = logits_fn()

    def loss_fn(params, x, y):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits(params, x), y))

optimizer = optax.sgd(LEARNING_RATE)


@jax.jit
def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


params = init_params(x.shape[1])
opt_state = optimizer.init(params)
for sl in batches(steps, batch, len(x)):
    params, opt_state, loss = step(params, opt_state, x[sl], y[sl])
np.asarray(loss)  # wait for the last step
if save:
    np.savez(save, *[np.asarray(a) for a in jax.tree_util.tree_leaves(params)])
