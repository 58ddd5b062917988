"""Parameter matching by order and shape; activation pairing across layer granularities."""

from __future__ import annotations

from xentdbg.compare.matching import match_activations, match_by_order
from xentdbg.records import TensorSpec


def specs(*shapes):
    return [TensorSpec(f"t{i}", s, "float32") for i, s in enumerate(shapes)]


def test_same_order_and_shapes_pair_one_to_one():
    m = match_by_order(specs((784, 1000), (1000,), (1000, 1), (1,)), specs((784, 1000), (1000,), (1000, 1), (1,)))
    assert m.ok and m.pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_shape_mismatch_is_reported_with_both_names():
    m = match_by_order(specs((784, 1000), (1000,)), specs((784, 500), (500,)))
    assert not m.ok and m.pairs == []
    assert m.problems == ["#0: t0 (784, 1000) vs t0 (784, 500)", "#1: t1 (1000,) vs t1 (500,)"]


def test_count_mismatch_is_reported():
    m = match_by_order(specs((3,), (4,)), specs((3,)))
    assert not m.ok and "A has 2 tensors, B has 1" in m.problems


def test_fused_activation_pairs_with_separate_stax_layers():
    keras = [("dense", (8, 1000)), ("dense_1", (8, 1))]
    stax = [("Dense", (8, 1000)), ("relu", (8, 1000)), ("Dense", (8, 1)), ("sigmoid", (8, 1))]
    assert match_activations(keras, stax).pairs == [(0, 1), (1, 3)]


def test_identical_layer_lists_pair_every_layer():
    layers = [("dense", (8, 64)), ("bn", (8, 64)), ("relu", (8, 64)), ("out", (8, 10))]
    assert match_activations(layers, layers).pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_unpairable_activations_say_why():
    m = match_activations([("a", (8, 3))], [("b", (8, 4))])
    assert m.pairs == [] and "layer output shapes differ" in m.problems[0]
