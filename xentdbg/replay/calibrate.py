"""``compare --calibrate``: measure each setup's run-to-run noise, per phase, by replaying
it against itself in two fresh workers, and set the tolerances from it.

For each phase, the noise is the largest ``max|A-B| / max(|A|,|B|)`` over every tensor
and step of the two self-replays (0.0 for a bitwise-deterministic setup). The phase's
``rtol`` becomes ``max(default rtol, SAFETY * noise)``: calibration raises a tolerance
above a setup's own nondeterminism (threads, GPU atomics, unseeded dropout) and never
lowers it below the default, which covers float32 reordering *between* frameworks
(measured up to 7e-5 of a tensor's scale; a self-replay cannot see it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import Calibration, CompareConfig, CompareResult, worst_noise
from xentdbg.records import CaptureMode

SAFETY = 10.0
_EXACT = Tolerance(rtol=0.0, atol=0.0)


def phase_noise(result: CompareResult) -> dict[str, float]:
    """Largest relative difference per phase in a self-replay result (inf: non-finite on one side)."""
    noise: dict[str, float] = {}
    for step in result.steps:
        for t in step.tensors:
            m = t.metrics
            if m is None or t.phase in ("inputs", "flags"):
                continue
            if not m.same_shape or m.nonfinite_mismatch:
                value = float("inf")
            else:
                value = m.max_abs / m.scale if m.scale > 0 else 0.0
            noise[t.phase] = max(noise.get(t.phase, 0.0), value)
    return noise


def calibrate(config: CompareConfig, replay: Callable[[CompareConfig], CompareResult],
              on_status: Callable[[str], None] | None = None) -> Calibration:
    """Self-replay both setups (``replay(config)`` runs one full-capture comparison) and
    return each side's noise per phase with the tolerance set from it. Two sides that run
    the same setup in the same environment are one setup: it is replayed once."""
    status = on_status or (lambda s: None)
    noise: dict[str, dict[str, float]] = {}
    measured: dict[tuple, dict[str, float]] = {}  # a side that is the other's setup in its environment: once
    for side, setup, env in (("A", config.setup_a, config.env_a), ("B", config.setup_b, config.env_b)):
        key = (setup, tuple(sorted(env.items())))
        if key not in measured:
            status(f"calibrating: {side} against itself")
            own = replace(config, setup_a=setup, setup_b=setup, env_a=env, env_b=env, tolerance=_EXACT,
                          save_traces=None, capture=CaptureMode.FULL, calibrate=False)
            measured[key] = phase_noise(replay(own))
        noise[side] = measured[key]
    base = config.tolerance
    rtols = {p: max(base.rtol, SAFETY * w) for p, w in worst_noise(noise).items()}
    overrides = tuple((p, rtol) for p, rtol in rtols.items() if rtol != base.rtol)
    return Calibration(noise=noise, tolerance=Tolerance(rtol=base.rtol, atol=base.atol, phase_rtol=overrides),
                       safety=SAFETY)
