"""The float64 oracle's workers: one per side, started at the first step that needs them.

:mod:`xentdbg.compare.oracle` says when a small introduced difference is float32
rounding; this module gets it the numbers. At a flagged step the cross-feed judged
introduced (:class:`xentdbg.replay.engine._CrossFeeder`), when the difference is small
enough to be rounding (:func:`worth_checking`), each side's training worker hands over
the batch the step trained on, and each side's float64 worker (the same setup, loaded
with float64 enabled; it never trains) re-runs the step's loss and gradients from the
deciding view's pre-step values. The workers start once and serve every later check; a
replay that flags no step never starts them.

They start on first use, or earlier, at the first step the cross-feed finds inherited
(drift): :meth:`Float64Oracle.prestart` spawns them without waiting, so they load while
the replay goes on, on CPU the lockstep leaves idle (the 500-step case-1 pair, in one run:
drift from step 157 on, the one check at step 425). A drifting pair is the kind whose later
steps bring small introduced differences. Starting costs a worker's load, about 1 s of
CPU for a JAX setup, even where no check follows.
"""

from __future__ import annotations

import numpy as np

from xentdbg.compare.divergence import DECISIVE_PHASES, StepComparison
from xentdbg.compare.oracle import CANCELLED, ORACLE_PHASES, Float64Check, check_float64
from xentdbg.compare.result import CompareConfig
from xentdbg.records import SideInfo, StepRecord
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.process import WorkerProcess, load_timeout, start_worker, wait_ready

BORDERLINE = 0.25
"""A flagged tensor whose ``max|A-B| / scale`` exceeds this is not re-run in float64 (but
see below): no rounding seen in these setups comes near (the 500-step BCE
pair's worst, a catastrophically cancelling gradient, is 0.026)."""

# A flagged tensor above BORDERLINE still runs when its ``max|A-B|`` is at most CANCELLED
# (xentdbg.compare.oracle) of the largest tensor of its phase in the step. A gradient whose
# exact value is zero, or nearly, is all rounding: the bias of a layer that BatchNorm
# follows (BatchNorm subtracts the batch mean, so d loss / d b = 0 exactly) comes out of
# two float32 programs as two noise vectors that differ by about their own size. Measured:
# the conv bias before BatchNorm, Keras 2's fused kernel against Keras 3
# (examples/upgrade/convnet.py), differs by 0.27 of its scale and 2e-5 of the step's
# largest gradient. Only the float64 re-run can tell such noise from a real difference.


def flagged_tensors(view: StepComparison) -> list[tuple[str, str, str]]:
    """``(phase, name_a, name_b)`` of each decisive tensor ``view`` flags."""
    return [(t.phase, t.name_a, t.name_b) for t in view.tensors if not t.ok and t.phase in DECISIVE_PHASES]


def worth_checking(view: StepComparison) -> str | None:
    """Why the float64 oracle need not run on ``view`` (the deciding view of an
    introduced difference), or None when it should: every flagged tensor is one the
    oracle re-runs, finite on both sides, and within :data:`BORDERLINE` of its scale or
    :data:`CANCELLED` of its phase's largest tensor."""
    largest: dict[str, float] = {}
    for t in view.tensors:
        if t.metrics is not None and t.metrics.same_shape:
            largest[t.phase] = max(largest.get(t.phase, 0.0), t.metrics.scale)
    for t in view.tensors:
        if t.ok or t.phase not in DECISIVE_PHASES:
            continue
        if t.phase not in ORACLE_PHASES:
            return f"the {t.phase} differ, which a float64 re-run cannot settle"
        m = t.metrics
        if m is None or not m.same_shape or m.nonfinite_a or m.nonfinite_b:
            return f"{t.phase} {t.name_a} is not finite or not comparable"
        if m.scale > 0 and m.max_abs / m.scale > BORDERLINE and m.max_abs > CANCELLED * largest[t.phase]:
            return f"{t.phase} {t.name_a} differs by {m.max_abs / m.scale:.2g} of its scale, beyond rounding"
    return None


class Float64Oracle:
    """Both sides' float64 workers, started on first use."""

    def __init__(self, config: CompareConfig, infos: tuple[SideInfo, SideInfo]):
        self.config, self.infos = config, infos
        self._workers: tuple[WorkerProcess, WorkerProcess] | None = None
        self._broken: str | None = None
        self._ready = False  # the workers answered ready and were checked (_start)
        self.last: tuple[StepRecord, StepRecord] | None = None  # the last check's float64 records (for traces)

    def prestart(self) -> None:
        """Spawn both float64 workers and let them load, without waiting for them (see
        the module docstring); the first :meth:`check` waits. Once only; a start that
        fails is reported by that check."""
        if self._workers is not None or self._broken:
            return
        config = self.config
        workers: list[WorkerProcess] = []
        try:
            for side, setup, env in (("A", config.setup_a, config.env_a), ("B", config.setup_b, config.env_b)):
                workers.append(start_worker(f"{side}64", SetupRef.parse(setup), env, config.data, config.steps,
                                            float64=True))
        except Exception as e:  # noqa: BLE001  (the oracle failing must not end the replay)
            for w in workers:
                w.close(grace=0)
            self._broken = f"a float64 worker did not start: {str(e).splitlines()[0]}"
            return
        self._workers = (workers[0], workers[1])

    def _start(self) -> tuple[WorkerProcess, WorkerProcess] | str:
        self.prestart()
        if self._broken:
            return self._broken
        assert self._workers is not None  # spawned by prestart
        if self._ready:
            return self._workers
        self._ready = True
        config = self.config
        try:
            for side, w, info in zip("AB", self._workers, self.infos):
                info64 = wait_ready(w, load_timeout(config.step_timeout))[0]
                missing = set(ORACLE_PHASES[:2]) - set(info64.probe)
                if missing:
                    self._broken = f"side {side} ({info.kind}) has no float64 re-run"
                elif [p.shape for p in info64.params] != [p.shape for p in info.params]:
                    self._broken = f"side {side}'s setup builds other parameters with float64 enabled"
                elif any(p.dtype != "float64" for p in info64.params):
                    self._broken = f"side {side}'s parameters stay float32 with float64 enabled (the setup fixes them)"
        except Exception as e:  # noqa: BLE001  (the oracle failing must not end the replay)
            self._broken = f"a float64 worker did not start: {str(e).splitlines()[0]}"
        return self._broken or self._workers

    def check(self, view: StepComparison, records: tuple[StepRecord, StepRecord], start: str,
              values: tuple[tuple[list[np.ndarray], list[np.ndarray] | None], ...],
              trainers: tuple[WorkerProcess, WorkerProcess]) -> Float64Check:
        """Re-run ``view``'s step in float64 on both sides from ``values`` (each side's
        ``(params, state)`` in its own table order: the deciding view's pre-step values,
        those of side ``start``) on the batch each training worker (``trainers``) held.

        A flagged phase that a side's float64 re-run does not return (its adapter's
        ``ORACLE_PHASES``, reported by its training worker) makes the check unavailable
        before any float64 worker starts."""
        flagged = {phase for phase, _, _ in flagged_tensors(view)}
        for side, info in zip("AB", self.infos):
            beyond = sorted(flagged - set(info.oracle))
            if not info.oracle:
                return Float64Check(unavailable=f"side {side} ({info.kind}) has no float64 re-run", start=start)
            if beyond:
                return Float64Check(unavailable=f"side {side} ({info.kind}) re-runs {', '.join(info.oracle)} in "
                                                f"float64, not {', '.join(beyond)}", start=start)
        workers = self._start()
        if isinstance(workers, str):
            return Float64Check(unavailable=workers, start=start)
        timeout = self.config.step_timeout
        try:
            batches = []
            for side, w in zip("AB", trainers):
                header, arrays = w.reply(w.request({"type": "batch", "step": view.step}), "batch", timeout)
                if "error" in header:
                    return Float64Check(unavailable=f"side {side}: {header['error']}", start=start)
                batches.append(arrays)
            writers = []
            for w, (params, state), batch in zip(workers, values, batches):
                state = state or []
                writers.append(w.request({"type": "oracle", "params": len(params), "state": len(state),
                                          "batch": len(batch)}, [*params, *state, *batch]))
            replies = [w.reply(writer, "probed", timeout) for w, writer in zip(workers, writers)]
        except Exception as e:  # noqa: BLE001
            self._broken = f"a float64 worker failed: {str(e).splitlines()[0]}"
            return Float64Check(unavailable=self._broken, start=start)
        errors = [f"side {s}: {h['error']}" for s, (h, _) in zip("AB", replies) if "error" in h]
        if errors:
            return Float64Check(unavailable="; ".join(errors), start=start)
        a64, b64 = (StepRecord.from_wire(h, x) for h, x in replies)
        self.last = (a64, b64)
        return check_float64(flagged_tensors(view), records[0], records[1], a64, b64, start)

    def close(self) -> None:
        """End both workers: those that served a check get 2 s to exit; those started
        early and never used are killed at once (one may still be loading)."""
        if self._workers is not None:
            for w in self._workers:
                w.close(grace=2.0 if self._ready else 0)
