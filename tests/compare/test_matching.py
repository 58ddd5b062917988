"""Activation pairing across layer granularities (parameters: test_params.py)."""

from __future__ import annotations

from xentdbg.compare.matching import match_activations


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


def test_an_inserted_weightless_layer_is_left_out_and_named_the_rest_pairs():
    rescaled = [("rescaling", (8, 784)), ("dense", (8, 64)), ("dense_1", (8, 10))]
    plain = [("dense", (8, 64)), ("dense_1", (8, 10))]
    m = match_activations(rescaled, plain)
    assert m.ok and m.pairs == [(1, 0), (2, 1)]
    assert m.unpaired == ["A rescaling (8, 784)"]
    # and the other way round
    assert match_activations(plain, rescaled).unpaired == ["B rescaling (8, 784)"]


def test_a_transpose_before_flatten_is_left_out_conv_flatten_and_dense_pair():
    jax_nchw = [("conv", (8, 26, 26, 32)), ("transpose", (8, 32, 26, 26)), ("flatten", (8, 21632)),
                ("dense", (8, 10))]
    keras = [("conv2d", (8, 26, 26, 32)), ("flatten", (8, 21632)), ("dense", (8, 10))]
    m = match_activations(jax_nchw, keras)
    assert m.pairs == [(0, 0), (2, 1), (3, 2)] and m.unpaired == ["A transpose (8, 32, 26, 26)"]


def test_layers_of_different_widths_pair_around_them():
    wide = [("dense", (8, 128)), ("dense_1", (8, 64)), ("out", (8, 10))]
    narrow = [("dense", (8, 32)), ("dense_1", (8, 64)), ("out", (8, 10))]
    m = match_activations(wide, narrow)
    assert m.pairs == [(1, 1), (2, 2)]
    assert m.unpaired == ["A dense (8, 128)", "B dense (8, 32)"]
