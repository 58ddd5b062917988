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
