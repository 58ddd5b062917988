"""compare_stream: the one comparison loop that replays and trace diffs both feed."""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import Pairing
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.stream import compare_stream
from xentdbg.findings import Diagnosis, Finding
from xentdbg.records import StepRecord


def record(step: int, loss: float, w: float) -> StepRecord:
    return StepRecord(step, {"loss": [("loss", np.float32(loss))], "weights": [("w", np.full(3, w, np.float32))]})


def pairs(diverge_at: int | None, steps: int = 5):
    for k in range(steps):
        b_loss = 2.0 if diverge_at is not None and k >= diverge_at else 1.0
        yield record(k, 1.0, 0.5), record(k, b_loss, 0.5)


def test_equal_stream_has_no_divergence_and_no_diagnosis():
    calls = []
    found = compare_stream(pairs(None), Pairing([(0, 0)], []), Tolerance(),
                           diagnose=lambda *args: calls.append(args) or Diagnosis([]))
    assert [s.step for s in found.steps] == [0, 1, 2, 3, 4]
    assert all(s.first is None for s in found.steps) and found.diagnosis is None and calls == []
    assert not found.stopped


def test_first_divergent_step_is_diagnosed_once_with_its_history_and_previous_records():
    seen = []

    def diagnose(step, history, records, previous):
        seen.append((step.step, [h.step for h in history], records[1].loss, previous[1] and previous[1].step))
        return Diagnosis([Finding("x", "x", ("evidence",))])

    found = compare_stream(pairs(2), Pairing([(0, 0)], []), Tolerance(), diagnose=diagnose)
    assert seen == [(2, [0, 1], 2.0, 1)]  # once, at step 2, history = steps 0 and 1, previous = step 1
    assert found.diagnosis is not None and found.diagnosis.top is not None and found.diagnosis.top.cause == "x"
    assert [s.first is not None for s in found.steps] == [False, False, True, True, True]
    # later steps are screened only: no full metrics beyond the first divergent step
    assert found.steps[2].first.metrics.cosine is not None
    assert found.steps[3].first.metrics.cosine is None


def test_stop_at_first_consumes_no_further_pair():
    consumed = []

    def producer():
        for pair in pairs(1):
            consumed.append(pair[0].step)
            yield pair

    steps_seen = []
    found = compare_stream(producer(), Pairing([(0, 0)], []), Tolerance(), stop_at_first=True,
                           on_step=lambda s: steps_seen.append(s.step))
    assert consumed == [0, 1] and steps_seen == [0, 1] and found.stopped


def test_updates_reuse_the_weights_scales_and_judge_as_when_read_again():
    """The updates' tolerance takes ``max(|A|, |B|)`` of the weights after the step from
    this step's weights comparison and of those before it from the previous step's; the
    verdicts and metrics are those of reading every weight again (``before_scales``
    omitted), including where a weight is not finite and its scale is read again."""
    from xentdbg.compare.divergence import compare_step, weight_scales

    rng = np.random.default_rng(7)
    w = [rng.normal(size=(6, 4)).astype(np.float32) * s for s in (1.0, 3.0)]

    def rec(step: int, ws: list[np.ndarray]) -> StepRecord:
        return StepRecord(step, {"loss": [("loss", np.float32(1.0))], "weights": [("k", ws[0]), ("b", ws[1])]})

    steps_a, steps_b = [rec(-1, w)], [rec(-1, w)]
    for k in range(4):
        delta = [rng.normal(size=x.shape).astype(np.float32) * 1e-3 for x in w]
        wa = [x + d for x, d in zip(steps_a[-1].arrays("weights"), delta, strict=True)]
        wb = [x + d * np.float32(1 + 1e-3 * k) for x, d in zip(steps_b[-1].arrays("weights"), delta, strict=True)]
        if k == 2:
            wb[1] = wb[1].copy()
            wb[1][0, 0] = np.inf  # not finite: its scale is read from the arrays again
        steps_a.append(rec(k, wa))
        steps_b.append(rec(k, wb))
    pairing = Pairing([(0, 0), (1, 1)], [])
    found = compare_stream(zip(steps_a[1:], steps_b[1:]), pairing, Tolerance(), start=(steps_a[0], steps_b[0]))
    for k, cmp in enumerate(found.steps):
        detail = all(s.first is None for s in found.steps[:k])  # as compare_stream details
        again = compare_step(steps_a[k + 1], steps_b[k + 1], pairing, Tolerance(), detail=detail,
                             before=(steps_a[k], steps_b[k]))
        ours = [(t.name_a, t.ok, t.metrics) for t in cmp.tensors if t.phase == "updates"]
        assert ours == [(t.name_a, t.ok, t.metrics) for t in again.tensors if t.phase == "updates"]
        assert len(ours) == 2
        # the scales reused are each finite pair's max(|A|, |B|), read from the arrays
        scales = weight_scales(cmp)
        for (na, xa), (nb, xb) in zip(steps_a[k + 1].tensors["weights"], steps_b[k + 1].tensors["weights"]):
            if np.isfinite(xa).all() and np.isfinite(xb).all():
                assert scales[(na, nb)] == float(max(np.abs(xa).max(), np.abs(xb).max()))
            else:
                assert (na, nb) not in scales
    assert not all(t.ok for t in found.steps[3].tensors if t.phase == "updates")  # a 0.3% update difference
