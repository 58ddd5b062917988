"""Aligning two batches by their per-sample sums (:mod:`xentdbg.compare.alignment`) and
comparing a step in the aligned order (:func:`xentdbg.compare.divergence.compare_step`).
Pure numpy: records are built here the way capture builds them."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.compare.alignment import ORDER, SAMPLES, SIZES, align, aligned_record, alignment_of
from xentdbg.compare.divergence import Pairing, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.records import StepRecord, batch_fingerprint

RNG = np.random.default_rng(0)
DATA_X = RNG.random((50, 6)).astype(np.float32)
DATA_Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 50)]
W = RNG.standard_normal((6, 3)).astype(np.float32)


def record(index: np.ndarray, w: np.ndarray = W, smooth: float = 0.0) -> StepRecord:
    """A step of a one-layer softmax regression on the samples ``index``: inputs, layer
    outputs (per sample), the mean cross-entropy and its gradient (both order-free)."""
    x, y = DATA_X[index], DATA_Y[index]
    inputs, digests = batch_fingerprint(x, y)
    z = x.astype(np.float64) @ w
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    target = (1 - smooth) * y + smooth / y.shape[1]
    loss = -(target * np.log(p)).sum(axis=1).mean()
    grad = x.T.astype(np.float64) @ (p - target) / len(x)
    return StepRecord(0, {"inputs": inputs, "activations": [("dense", p.astype(np.float32))],
                          "loss": [("loss", np.float32(loss))], "gradients": [("w", grad.astype(np.float32))],
                          "weights": [("w", (w - 0.1 * grad).astype(np.float32))]}, digests=digests)


def test_same_samples_in_another_order_give_the_permutation():
    index = np.arange(10, 30)
    shuffled = RNG.permutation(index)
    a, b = record(shuffled), record(index)
    al = alignment_of(a, b)
    assert al is not None and al.kind == ORDER and al.common == 20
    assert np.array_equal(shuffled[al.perm], index)  # A[perm] = B
    assert al.moved == int(np.count_nonzero(shuffled != index))
    assert "same 20 samples in another order" in al.describe()


def test_identical_batches_need_no_alignment():
    assert alignment_of(record(np.arange(10)), record(np.arange(10))) is None


def test_other_samples_and_other_sizes():
    al = align(*(s for _, s in record(np.arange(0, 20)).tensors["inputs"]),
               *(s for _, s in record(np.arange(15, 35)).tensors["inputs"]))
    assert (al.kind, al.common, al.perm) == (SAMPLES, 5, None)
    al = align(np.arange(3.0), np.ones(3), np.arange(4.0), np.ones(4))
    assert (al.kind, al.common) == (SIZES, 3)


def test_equal_keys_pair_in_batch_order_and_y_tells_samples_apart():
    # two samples with the same pixel sum but other labels: y's sum does not tell them
    # apart (one-hot rows all sum to 1), so they pair in batch order; x and y together must match
    xa, ya = np.array([1.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0])
    al = align(xa, ya, np.array([2.0, 1.0, 1.0]), ya)
    assert al.kind == ORDER and list(al.perm) == [1, 0, 2]
    assert align(xa, np.array([1.0, 1.0, 2.0]), xa, ya).kind == SAMPLES


def test_aligned_record_permutes_per_sample_tensors_only():
    index = np.arange(8)
    perm = np.array([3, 1, 0, 2, 7, 6, 5, 4])
    a = record(index[::-1].copy())
    out = aligned_record(a, perm)
    assert np.array_equal(out.tensors["activations"][0][1], a.tensors["activations"][0][1][perm])
    assert np.array_equal(out.tensors["inputs"][0][1], a.tensors["inputs"][0][1][perm])
    assert out.tensors["gradients"] is a.tensors["gradients"] and out.digests == a.digests


def test_a_reordered_batch_compares_equal_in_the_aligned_order():
    index = np.arange(20)
    shuffled = RNG.permutation(index)
    a, b = record(shuffled), record(index)
    step = compare_step(a, b, Pairing([(0, 0)], []), Tolerance())
    assert step.alignment is not None and step.alignment.kind == ORDER
    assert step.reordered and step.first is None, [t.label for t in step.divergences]
    inputs = [t for t in step.tensors if t.phase == "inputs"]
    assert all(t.ok and "another order" in t.note for t in inputs)
    # unaligned, the same layer outputs differ: the alignment is what makes them agree
    unaligned = np.asarray(a.tensors["activations"][0][1])
    assert not np.allclose(unaligned, b.tensors["activations"][0][1], atol=1e-3)


def test_a_second_difference_survives_the_alignment():
    index = np.arange(20)
    a, b = record(RNG.permutation(index)), record(index, smooth=0.1)
    step = compare_step(a, b, Pairing([(0, 0)], []), Tolerance())
    assert step.reordered
    assert step.first is not None and step.first.phase in ("loss", "gradients"), step.first


def test_other_samples_stay_a_divergence_of_the_inputs():
    step = compare_step(record(np.arange(0, 20)), record(np.arange(10, 30)), Pairing([(0, 0)], []), Tolerance())
    assert step.alignment is not None and step.alignment.kind == SAMPLES and not step.reordered
    assert step.first is not None and (step.first.phase, step.first.name_a) == ("inputs", "x")


@pytest.mark.parametrize("n", [1, 5])
def test_a_single_moved_pair_is_found(n):
    index = np.arange(n)
    a = index.copy()
    if n > 1:
        a[[0, -1]] = a[[-1, 0]]
    al = alignment_of(record(a), record(index))
    if n == 1:
        assert al is None
    else:
        assert al is not None and al.moved == 2
