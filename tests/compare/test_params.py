"""Parameter pairing by structure (:mod:`xentdbg.compare.params`): layer, role, size-1 axes, frozen layers."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.params import Frozen, match_parameters, transfer
from xentdbg.records import TensorSpec


def specs(*named):
    return [TensorSpec(n, tuple(s), "float32") for n, s in named]


KERAS = specs(("dense/kernel", (784, 64)), ("dense/bias", (64,)), ("dense_1/kernel", (64, 10)),
              ("dense_1/bias", (10,)))


def test_same_framework_pairs_in_order():
    m = match_parameters(KERAS, KERAS)
    assert m.ok and m.params == [(0, 0), (1, 1), (2, 2), (3, 3)] and not m.notes


def test_flax_dicts_bias_before_kernel_pair_by_role():
    flax = specs(("['params']['Dense_0']['bias']", (64,)), ("['params']['Dense_0']['kernel']", (784, 64)),
                 ("['params']['Dense_1']['bias']", (10,)), ("['params']['Dense_1']['kernel']", (64, 10)))
    m = match_parameters(KERAS, flax)
    assert m.ok and m.params == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert "paired by layer and role" in m.notes[0]


def test_flat_dict_w1_b1_pairs_by_number_and_role():
    flat = specs(("['b1']", (64,)), ("['b2']", (10,)), ("['w1']", (784, 64)), ("['w2']", (64, 10)))
    m = match_parameters(KERAS, flat)
    assert m.ok and m.params == [(0, 2), (1, 0), (2, 3), (3, 1)]


def test_flax_numbered_layers_sort_naturally():
    names = [f"Dense_{k}" for k in range(12)]
    shapes = [(8, 8)] * 12
    a = specs(*[(f"dense_{k}/kernel", s) for k, s in enumerate(shapes)])
    b = specs(*sorted([(f"['{n}']['kernel']", s) for n, s in zip(names, shapes)]))  # Dense_10 before Dense_2
    m = match_parameters(a, b)
    assert m.ok
    assert [b[j].name for _, j in m.params] == [f"['Dense_{k}']['kernel']" for k in range(12)]


def test_stax_conv_bias_pairs_up_to_size_one_axes_and_transfers_reshaped():
    a = specs(("conv2d/kernel", (3, 3, 1, 8)), ("conv2d/bias", (8,)))
    b = specs(("[0][0]", (3, 3, 1, 8)), ("[0][1]", (1, 1, 1, 8)))
    m = match_parameters(a, b)
    assert m.ok and m.params == [(0, 0), (1, 1)]
    assert "compared reshaped" in m.notes[-1]
    values = [np.zeros((3, 3, 1, 8), np.float32), np.arange(8, dtype=np.float32)]
    params, state = transfer(m, values, [], b, [], to_b=True)
    assert params is not None and params[1].shape == (1, 1, 1, 8) and state == []
    back, _ = transfer(m, params, [], a, [], to_b=False)
    assert back is not None and back[1].shape == (8,) and np.array_equal(back[1], values[1])


def test_frozen_layer_pairs_a_parameter_with_the_other_sides_state():
    b_params = KERAS[2:]
    b_state = specs(("dense/kernel", (784, 64)), ("dense/bias", (64,)))
    m = match_parameters(KERAS, b_params, [], b_state)
    assert m.ok and m.params == [(2, 0), (3, 1)]
    assert m.frozen == [Frozen("A", 0, 0, "dense/kernel", "dense/kernel"), Frozen("A", 1, 1, "dense/bias",
                                                                                     "dense/bias")]
    a_vals = [np.full(t.shape, k, np.float32) for k, t in enumerate(KERAS)]
    params, state = transfer(m, a_vals, [], b_params, b_state, to_b=True)
    assert params is not None and state is not None
    assert [float(p.flat[0]) for p in params] == [2.0, 3.0] and [float(s.flat[0]) for s in state] == [0.0, 1.0]
    back, _ = transfer(m, params, state, KERAS, [], to_b=False)
    assert back is not None and [float(p.flat[0]) for p in back] == [0.0, 1.0, 2.0, 3.0]


def test_equal_shaped_layers_in_sorted_dict_order_are_ambiguous():
    a = specs(("dense/kernel", (784, 64)), ("dense_1/kernel", (64, 64)), ("dense_2/kernel", (64, 64)),
              ("dense_3/kernel", (64, 10)))
    b = specs(("['input']['w']", (784, 64)), ("['last_hidden']['w']", (64, 64)), ("['middle']['w']", (64, 64)),
              ("['output']['w']", (64, 10)))
    m = match_parameters(a, b)
    assert not m.ok and "last_hidden, middle" in m.problems[0]
    explicit = {"dense_1/kernel": "['middle']['w']", "dense_2/kernel": "['last_hidden']['w']"}
    m = match_parameters(a, b, explicit=explicit)
    assert m.ok and m.params == [(0, 0), (1, 2), (2, 1), (3, 3)]


def test_pair_file_names_unknown_tensors():
    m = match_parameters(KERAS, KERAS, explicit={"dense/kernel": "nope"})
    assert not m.ok and "B has no tensor 'nope'" in m.problems[0]


def test_unpaired_parameters_are_listed():
    m = match_parameters(KERAS, specs(("d/kernel", (784, 32)), ("d/bias", (32,))))
    assert not m.ok and m.problems[-1].startswith("unpaired: A dense/kernel (784, 64)")


def test_batchnorm_state_pairs_by_role_across_frameworks():
    a = specs(("batch_normalization/moving_mean", (64,)), ("batch_normalization/moving_variance", (64,)))
    b = specs(("['batch_stats']['BatchNorm_0']['mean']", (64,)), ("['batch_stats']['BatchNorm_0']['var']", (64,)))
    m = match_parameters([], [], a, b)
    assert m.state == [(0, 0), (1, 1)] and not m.state_problems


def test_a_frozen_pair_is_compared_as_the_trainers_weights_against_the_holders_state():
    from xentdbg.compare.divergence import Pairing, compare_step
    from xentdbg.compare.metrics import Tolerance
    from xentdbg.records import StepRecord

    w0, w1 = np.ones((3, 2), np.float32), np.full((3, 2), 0.9, np.float32)
    bias = np.zeros((1, 1, 1, 2), np.float32)  # B's (1, 1, 1, C) against A's (C,)
    pairing = Pairing(params=[(1, 0)], state=[], frozen=[Frozen("A", 0, 0, "k", "k")])

    def record(step, weights, state):
        return StepRecord(step, {"loss": [("loss", np.float32(1.0))], "weights": weights, "state": state})

    before = (record(-1, [("k", w0), ("b", bias.reshape(2))], []), record(-1, [("b", bias)], [("k", w0)]))
    after_a = record(0, [("k", w1), ("b", bias.reshape(2))], [])
    after_b = record(0, [("b", bias)], [("k", w0)])
    cmp = compare_step(after_a, after_b, pairing, Tolerance(), before=before)
    assert cmp.first is not None and cmp.first.label == "step 0 · update · k"
    assert [(t.phase, t.name_a, t.ok) for t in cmp.tensors] == [
        ("loss", "loss", True), ("updates", "b", True), ("updates", "k", False), ("weights", "b", True),
        ("weights", "k", False)]
