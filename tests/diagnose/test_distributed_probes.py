"""The distributed probes on synthetic records (pure numpy): a side on 4 replicas whose
loss each replica averaged over its own samples, and per-replica BatchNorm statistics;
each stays silent when its numbers do not fit."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import Pairing, compare_step
from xentdbg.compare.metrics import Tolerance
from xentdbg.diagnose import diagnose
from xentdbg.diagnose.context import Context, Side
from xentdbg.findings import Diagnosis
from xentdbg.records import SideInfo, StepRecord, TensorSpec, batch_fingerprint

RNG = np.random.default_rng(1)
NAMES = ["dense/kernel", "dense/bias"]
W0 = [RNG.standard_normal((6, 4)).astype(np.float32), np.zeros(4, np.float32)]
G = [RNG.standard_normal((6, 4)).astype(np.float32), RNG.standard_normal(4).astype(np.float32)]
BN = ["seq/bn/moving_mean", "seq/bn/moving_variance"]
R = 4


def _info(replicas: int, state=(), jax: bool = False) -> SideInfo:
    if jax:  # JaxStep(mesh=...) reports its mesh
        fw = {"backend": "cpu", **({"replicas": str(replicas), "strategy": "shard_map", "mesh": f"data={replicas}",
                                    "batch_axis": "data"} if replicas > 1 else {})}
    else:
        fw = {"backend": "tensorflow", **({"replicas": str(replicas), "strategy": "MirroredStrategy"}
                                         if replicas > 1 else {})}
    return SideInfo("KerasLoop", fw, [TensorSpec.of(n, w) for n, w in zip(NAMES, W0)],
                    [TensorSpec.of(n, s) for n, s in state])


def _record(loss, grads, state=(), acts=(), replicas=()) -> StepRecord:
    weights = [w - np.float32(0.1) * g for w, g in zip(W0, grads)]
    return StepRecord(0, {"loss": [("loss", np.float32(loss))], "gradients": list(zip(NAMES, grads)),
                          "weights": list(zip(NAMES, weights)), "state": list(state), "activations": list(acts)},
                      replicas=list(replicas))


def _diagnose(ra: StepRecord, rb: StepRecord, replicas_b: int = R, state_before=(), jax: bool = False) -> Diagnosis:
    pairing = Pairing(params=[(0, 0), (1, 1)], state=[(i, i) for i in range(len(state_before))])
    step = compare_step(ra, rb, pairing, Tolerance())
    assert step.first is not None
    before = list(zip(NAMES, W0))
    ctx = Context(step, Side("A", _info(1, state_before, jax), ra, before, list(state_before)),
                  Side("B", _info(replicas_b, state_before, jax), rb, before, list(state_before)), pairing,
                  Tolerance(), None, None, [step])
    return diagnose(ctx)


def _unscaled(factor: float = R, replicas_b: int = R, loss_factor: float = R) -> Diagnosis:
    # replica r's local gradient: the mean gradient of its own samples, which average to G
    local = [[g + np.float32(0.1 * (r - 1.5)) * np.ones_like(g) for g in G] for r in range(R)]
    losses = [np.float32(2.0 + 0.05 * (r - 1.5)) for r in range(R)]
    replicas = [{"loss": [("loss", losses[r])], "gradients": list(zip(NAMES, local[r]))} for r in range(R)]
    summed = [np.sum([local[r][i] for r in range(R)], axis=0) for i in range(len(G))]
    ra = _record(2.0, G)
    rb = _record(2.0 * loss_factor, [s * np.float32(factor / R) for s in summed], replicas=replicas)
    return _diagnose(ra, rb, replicas_b)


def test_gradients_summed_over_replicas_that_each_averaged_their_loss_are_named():
    d = _unscaled()
    assert d.top.cause == "unscaled-replica-loss"
    assert d.top.numbers["replicas"] == R and abs(d.top.numbers["factor"] - R) < 1e-4
    evidence = " ".join(d.top.evidence)
    assert "local gradients sum to the applied ones" in evidence
    assert "average to 2" in evidence and "the loss side B returns is 4 x side A's" in evidence


def test_the_loss_reduced_as_a_mean_still_shows_the_gradient_factor():
    d = _unscaled(loss_factor=1.0)  # strategy.reduce(MEAN) of the replicas' means: the loss agrees
    assert d.top.cause == "unscaled-replica-loss"
    assert "the loss side B returns" not in " ".join(d.top.evidence)


def test_unscaled_replica_loss_needs_the_replica_count_and_a_distributed_side():
    assert all(f.cause != "unscaled-replica-loss" for f in _unscaled(factor=2.0).findings)
    assert all(f.cause != "unscaled-replica-loss" for f in _unscaled(replicas_b=1).findings)


FLAX_BN = ["['bn']['mean']", "['bn']['var']"]  # a linen TrainState's batch_stats, as JaxStep names them


def _bn(per_replica: bool, replicas_b: int = R, names=BN, jax: bool = False, replica_state: bool = True):
    """BN input h (64, 3) in 4 slices of 16 with other means; momentum 0.99 from zeros;
    the statistics named as Keras (``BN``) or as Flax linen (``FLAX_BN``) names them."""
    h = (RNG.standard_normal((64, 3)) + np.repeat(np.arange(R), 16)[:, None]).astype(np.float32)
    x = RNG.random((64, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(64) % 3]
    before = [(names[0], np.zeros(3, np.float32)), (names[1], np.ones(3, np.float32))]

    def update(rows):
        rows = rows.astype(np.float64)
        return [(names[0], (0.01 * rows.mean(axis=0)).astype(np.float32)),
                (names[1], (0.99 + 0.01 * rows.var(axis=0)).astype(np.float32))]

    slices = [h[16 * r:16 * (r + 1)] for r in range(R)]
    copies = [update(s) if per_replica else update(h) for s in slices]
    replicas = [{"inputs": batch_fingerprint(x[16 * r:16 * (r + 1)], y[16 * r:16 * (r + 1)])[0],
                 **({"state": copies[r]} if replica_state else {})} for r in range(R)]
    acts = [("dense", h), ("bn", h)]
    ra = _record(2.0, G, update(h), acts)
    rb = _record(2.0 if not per_replica else 2.1, [g * np.float32(1.1) for g in G], copies[0], acts,
                 replicas=replicas)
    return _diagnose(ra, rb, replicas_b, before, jax)


def test_per_replica_batchnorm_statistics_are_fitted_copy_by_copy():
    d = _bn(per_replica=True)
    assert d.top.cause == "per-replica-batchnorm"
    assert d.top.numbers["layers"] == ["seq/bn"]
    evidence = " ".join(d.top.evidence)
    assert "replica r's 16/16/16/16 samples" in evidence and "fits the mean of all 64 samples" in evidence


def test_per_replica_batchnorm_reads_flax_batch_stats_and_gives_the_jax_fix():
    d = _bn(per_replica=True, names=FLAX_BN, jax=True)
    assert d.top.cause == "per-replica-batchnorm" and d.top.numbers["layers"] == ["bn"]
    assert 'flax.linen.BatchNorm axis_name="data"' in d.top.fix and "synchronized" not in d.top.fix
    assert all(f.cause != "per-replica-batchnorm" for f in _bn(per_replica=False, names=FLAX_BN, jax=True).findings)


def test_per_replica_batchnorm_without_per_replica_state_stays_silent():
    """A JAX step under jit sharding records no per-replica state: no finding, no probe error."""
    d = _bn(per_replica=True, names=FLAX_BN, jax=True, replica_state=False)
    assert all(f.cause != "per-replica-batchnorm" for f in d.findings) and not d.errors


def test_per_replica_batchnorm_needs_copies_that_part_and_a_distributed_side():
    assert all(f.cause != "per-replica-batchnorm" for f in _bn(per_replica=False).findings)
    assert all(f.cause != "per-replica-batchnorm" for f in _bn(per_replica=True, replicas_b=1).findings)


def test_replicas_cross_the_wire_and_are_copied_with_the_record():
    record = StepRecord.of(3, {"loss": [("loss", np.float32(1))],
                               "replica:1:gradients": [("w", np.ones(2, np.float32))],
                               "replica:0:loss": [("loss", np.float32(0.5))]})
    assert [sorted(r) for r in record.replicas] == [["loss"], ["gradients"]]
    header, arrays = record.to_wire()
    back = StepRecord.from_wire(header, arrays)
    assert back.tensors.keys() == {"loss"} and len(back.replicas) == 2
    assert back.replicas[1]["gradients"][0][0] == "w" and float(back.replicas[0]["loss"][0][1]) == 0.5
    owned = back.owned()
    assert header["layout"] == [["loss", "loss"], ["replica:0:loss", "loss"], ["replica:1:gradients", "w"]]
    arrays[2][:] = 7  # the wire's arrays are views a later step reuses
    assert float(owned.replicas[1]["gradients"][0][1][0]) == 1.0


def _uneven_records(divisor=None) -> tuple[StepRecord, StepRecord]:
    """50 samples over 4 replicas (13/13/13/11); replica r divides by 4 n_r (compute_average_loss
    without global_batch_size), or by ``divisor`` when given."""
    sizes, n = [13, 13, 13, 11], 50
    per_sample = [[RNG.standard_normal(g.shape).astype(np.float64) for g in G] for _ in range(n)]
    x = RNG.random((n, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    starts = np.cumsum([0, *sizes])
    local = []
    for r in range(R):
        rows = per_sample[starts[r]:starts[r + 1]]
        local.append([np.sum([s[i] for s in rows], axis=0).astype(np.float32) / np.float32(divisor or R * sizes[r])
                      for i in range(len(G))])
    one = [np.sum([s[i] for s in per_sample], axis=0).astype(np.float32) / np.float32(n) for i in range(len(G))]
    applied = [np.sum([local[r][i] for r in range(R)], axis=0) for i in range(len(G))]
    replicas = [{"inputs": batch_fingerprint(x[starts[r]:starts[r + 1]], y[starts[r]:starts[r + 1]])[0],
                 "gradients": list(zip(NAMES, local[r]))} for r in range(R)]
    return _record(2.0, one), _record(2.0, applied, replicas=replicas)


def test_uneven_replica_batches_divided_by_their_own_size_are_named_with_the_divisors():
    d = _diagnose(*_uneven_records())
    assert d.top.cause == "uneven-replica-batches"
    assert d.top.numbers["sizes"] == [13, 13, 13, 11]
    assert np.allclose(d.top.numbers["divisors"], [52, 52, 52, 44], rtol=1e-4)
    assert "global_batch_size=50" in d.top.fix


def test_uneven_replica_batches_needs_divisors_that_follow_the_replicas_sizes():
    ra, rb = _uneven_records(divisor=50)  # divided by the global batch: one device's gradients, up to rounding
    assert compare_step(ra, rb, Pairing(params=[(0, 0), (1, 1)], state=[]), Tolerance()).first is None
    assert all(f.cause != "uneven-replica-batches" for f in _diagnose(*_uneven_records(divisor=52)).findings)
    assert all(f.cause != "uneven-replica-batches" for f in _diagnose(*_uneven_records(), replicas_b=1).findings)


def _lr(ratio: float, replicas_b: int = R) -> Diagnosis:
    ra = _record(2.0, G)
    rb = _record(2.0, G)
    rb.tensors["weights"] = [(n, w - np.float32(0.1 * ratio) * g) for n, w, g in zip(NAMES, W0, G)]
    return _diagnose(ra, rb, replicas_b)


def test_a_learning_rate_scaled_by_the_replica_count_for_the_same_global_batch_is_named():
    for ratio, direction in ((4.0, "scaled by"), (0.25, "divided by")):
        d = _lr(ratio)
        assert d.top.cause == "learning-rate-replica-scaling", d.findings
        assert abs(d.top.numbers["ratio"] - ratio) < 1e-4 and direction in d.top.title


def test_learning_rate_replica_scaling_needs_the_replica_count():
    assert all(f.cause != "learning-rate-replica-scaling" for f in _lr(3.0).findings)
    assert all(f.cause != "learning-rate-replica-scaling" for f in _lr(4.0, replicas_b=1).findings)


def test_each_replica_drawing_its_own_dropout_masks_is_named_per_slice():
    h = np.abs(RNG.standard_normal((64, 8))).astype(np.float32) + 0.1
    keep_a = RNG.random((64, 8)) > 0.3
    keep_b = np.where(np.arange(64)[:, None] < 16, keep_a, RNG.random((64, 8)) > 0.3)
    x = RNG.random((64, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(64) % 3]
    out = [np.where(k, h / np.float32(0.7), 0).astype(np.float32) for k in (keep_a, keep_b)]
    replicas = [{"inputs": batch_fingerprint(x[16 * r:16 * (r + 1)], y[16 * r:16 * (r + 1)])[0]} for r in range(R)]
    ra = _record(2.0, G, acts=[("dense", h), ("dropout", out[0])])
    rb = _record(2.05, [g * np.float32(1.05) for g in G], acts=[("dense", h), ("dropout", out[1])],
                 replicas=replicas)
    d = _diagnose(ra, rb)
    assert d.top.cause == "per-replica-dropout", d.findings
    line = next(e for e in d.top.evidence if "per replica slice" in e)
    assert "agree on 100.0%" in line and "16/16/16/16 rows" in line
    one = _diagnose(ra, StepRecord(0, rb.tensors))  # no replicas recorded: the plain dropout finding
    assert one.top.cause == "dropout-masks"
