"""The case-1 network, Dense(1000)-ReLU-Dense(1)-sigmoid, as stax layers (shared by the JAX setups)."""

import jax
from jax.example_libraries import stax

LAYERS = [stax.Dense(1000), stax.Relu, stax.Dense(1), stax.Sigmoid]
SEED = 0  # PRNGKey(0): the initial weights of case 1 in docs/reference-cases.md
LEARNING_RATE = 0.01


def init_params(input_dim: int):
    init_fun, _ = stax.serial(*LAYERS)
    _, params = init_fun(jax.random.PRNGKey(SEED), (-1, input_dim))
    return params


def logits_fn():
    """apply(params, x) -> logits: the network without its final sigmoid."""
    _, apply = stax.serial(*LAYERS[:-1])
    return lambda params, x: apply(params[:-1], x)


def probs_fn():
    _, apply = stax.serial(*LAYERS)
    return apply
