"""Each side's batch, located in the dataset by its record's per-sample sums
(:func:`xentdbg.diagnose.build.located_batch`): what the probes get as ``Side.x``,
``Side.y`` and, when both sides trained on one batch, ``ctx.x``, ``ctx.y``."""

from __future__ import annotations

import numpy as np

from xentdbg.data import DataSpec, load
from xentdbg.diagnose.build import located_batch
from xentdbg.records import StepRecord, batch_fingerprint

DATA = load(DataSpec(subset=300, task="digits", pixels="unit", batch_size=100))
SUMS = np.ascontiguousarray(DATA.x, np.float32).reshape(len(DATA.x), -1).sum(axis=1, dtype=np.float64)


def record(step: int, x: np.ndarray, y: np.ndarray) -> StepRecord:
    inputs, digests = batch_fingerprint(x, y)
    return StepRecord(step, {"inputs": inputs}, digests=digests)


def test_the_in_order_slice_and_a_shuffled_batch_are_found_exactly():
    got = located_batch(record(1, DATA.x[100:200], DATA.y[100:200]), DATA, SUMS)
    assert got is not None and np.array_equal(got[0], DATA.x[100:200]) and np.array_equal(got[1], DATA.y[100:200])
    index = np.random.default_rng(0).permutation(300)[:100]  # fit's first batch mixes all three slices
    got = located_batch(record(0, DATA.x[index], DATA.y[index]), DATA, SUMS)
    assert got is not None
    assert np.array_equal(got[0], DATA.x[index]) and np.array_equal(got[1], DATA.y[index])


def test_a_batch_that_is_not_the_datasets_is_not_located():
    x, y = DATA.x[:100], DATA.y[:100]
    assert located_batch(record(0, x * 255, y), DATA, SUMS) is None  # preprocessed before the step
    wrong_labels = np.roll(y, 1, axis=0)  # the right images with other labels: the y digest tells
    got = located_batch(record(0, x, wrong_labels), DATA, SUMS)
    assert got is not None and np.array_equal(got[0], x) and got[1] is None


def test_the_same_images_with_mixed_up_labels_are_named_from_the_dataset():
    from xentdbg.compare.divergence import Pairing, compare_step
    from xentdbg.compare.metrics import Tolerance
    from xentdbg.diagnose.build import _context
    from xentdbg.diagnose.data import different_data
    from xentdbg.records import SideInfo

    x, y = DATA.x[:100], DATA.y[:100]
    info = SideInfo("KerasLoop", {}, [], [])

    def diagnosed(a: StepRecord, b: StepRecord):
        for r in (a, b):
            r.tensors["loss"] = [("loss", np.float32(1.0))]
        step = compare_step(a, b, Pairing([], []), Tolerance())
        ctx = _context(step, [], (a, b), (None, None), None, (info, info), Pairing([], []), Tolerance(), DATA,
                       SUMS, None, None)
        return step, different_data(ctx, SUMS, 0)

    # images reversed, labels left in place: one-hot label sums (all 1) cannot tell, the dataset can
    step, found = diagnosed(record(0, x[::-1].copy(), y), record(0, x, y))
    assert step.reordered
    assert [f.numbers.get("sides") for f in found] == [["A"]], found
    assert "side B feeds the dataset's labels" in " ".join(found[0].evidence)
    # images and labels reversed together: the same samples in another order, nothing to report
    step, found = diagnosed(record(0, x[::-1].copy(), y[::-1].copy()), record(0, x, y))
    assert step.reordered and step.first is None and found == []
