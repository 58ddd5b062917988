"""What a comparison is asked and what it found: the records every renderer reads.

``compare`` (a live replay, :mod:`xentdbg.replay.engine`) and ``diff`` (two traces,
:mod:`xentdbg.trace.diff`) both return a :class:`CompareResult`; the reports
(:mod:`xentdbg.report`) read nothing else. Plain data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from xentdbg.compare.crossfeed import Drift
from xentdbg.compare.divergence import StepComparison, TensorComparison
from xentdbg.compare.metrics import Tolerance
from xentdbg.data import DataSpec
from xentdbg.errors import EXIT_DIVERGED, EXIT_OK
from xentdbg.findings import Diagnosis
from xentdbg.records import PHASES, CaptureMode, SideInfo

Init = Literal["a", "b", "own", "traces"]

DEFAULT_TRACE_BUDGET = 2 * 10**9
"""Bytes a run's traces may take unless told otherwise (``--trace-budget``, ``trace --budget``)."""


@dataclass(frozen=True)
class CompareConfig:
    """Everything ``compare`` needs.

    ``init``: which side's initial weights both start from (``"a"``, ``"b"``), ``"own"``
    for each its own (``"traces"``: a ``diff`` of two recorded runs). ``capture``:
    :attr:`CaptureMode.FULL` replays once with full capture;
    :attr:`CaptureMode.FINGERPRINT` replays with fingerprints until the first
    difference, then with full capture up to it. ``calibrate``: first replay each side
    against itself and set per-phase tolerances from its noise. ``float64``: re-run a
    small difference a step introduced in float64 on both sides, to tell float32
    rounding from a real difference (:mod:`xentdbg.compare.oracle`). ``pair``: a file
    mapping A's tensor names to B's (:mod:`xentdbg.replay.pairfile`). ``save_traces``: a
    folder for both sides' traces, which keep ``trace_phases`` of steps 0, ``trace_every``,
    2 ``trace_every``, ...; the run is refused before any step when they would exceed
    ``trace_budget`` bytes (None: no limit)."""

    setup_a: str
    setup_b: str
    data: DataSpec = field(default_factory=DataSpec)
    steps: int = 10
    init: Init = "a"
    env_a: dict[str, str] = field(default_factory=dict)
    env_b: dict[str, str] = field(default_factory=dict)
    tolerance: Tolerance = field(default_factory=Tolerance)
    step_timeout: float | None = None
    save_traces: str | None = None  # folder for a.h5 and b.h5
    capture: CaptureMode = CaptureMode.FULL
    calibrate: bool = False
    float64: bool = True
    pair: str | None = None  # --pair FILE: explicit {A name: B name} for what automatic pairing leaves ambiguous
    trace_phases: tuple[str, ...] = PHASES
    trace_every: int = 1
    trace_budget: int | None = DEFAULT_TRACE_BUDGET


@dataclass(frozen=True)
class Calibration:
    """``--calibrate``: each side's run-to-run noise per phase, and the tolerances set from it.

    ``noise[side][phase]`` is the largest ``max|A-B| / max(|A|,|B|)`` of a self-replay;
    the phase's rtol is ``max(default rtol, safety * max over sides)``."""

    noise: dict[str, dict[str, float]]
    tolerance: Tolerance
    safety: float

    @property
    def phase_noise(self) -> dict[str, float]:
        """The larger side's noise per phase: the floor the noise probe compares against."""
        return worst_noise(self.noise)

    @property
    def per_phase(self) -> dict[str, dict[str, float]]:
        return {p: {"noise": v, "rtol": self.tolerance.for_phase(p).rtol} for p, v in self.phase_noise.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "per_phase": self.per_phase, "safety": self.safety,
                "rule": self.tolerance.describe()}


def worst_noise(noise: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per phase, the largest noise any side measured (0.0 where none was)."""
    return {p: max((side.get(p, 0.0) for side in noise.values()), default=0.0) for p in PHASES}


@dataclass(frozen=True)
class FingerprintPass:
    """``--fingerprint``: how many steps the light first pass replayed, and the tensor it
    flagged (``None``: nothing differed, and the result holds that pass only)."""

    steps: int
    flagged: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "flagged": self.flagged}


@dataclass
class CompareResult:
    """The compared steps of two runs, the first divergence, and why.

    ``capture`` says how the reported steps were captured: :attr:`CaptureMode.FINGERPRINT`
    when only the light first pass of ``--fingerprint`` ran (it flagged nothing)."""

    config: CompareConfig
    info_a: SideInfo
    info_b: SideInfo
    steps: list[StepComparison]
    notes: list[str]
    versions: dict[str, str]
    capture: CaptureMode = CaptureMode.FULL
    diagnosis: Diagnosis | None = None  # why the first divergence happened (full capture only)
    calibration: Calibration | None = None
    fingerprint_pass: FingerprintPass | None = None
    drift: Drift | None = None  # flagged steps the cross-feed showed inherited
    recorded_commands: tuple[str | None, str | None] | None = None  # diff: the command lines the traces recorded

    @property
    def first(self) -> TensorComparison | None:
        return next((s.first for s in self.steps if s.first is not None), None)

    @property
    def nonfinite_loss_from(self) -> dict[str, int | None]:
        """First step at which each side's loss is NaN or Inf (None: finite throughout)."""
        def onset(values: list[float]) -> int | None:
            return next((s.step for s, v in zip(self.steps, values) if not np.isfinite(v)), None)

        return {"A": onset([s.loss_a for s in self.steps]), "B": onset([s.loss_b for s in self.steps])}

    @property
    def exit_code(self) -> int:
        return EXIT_DIVERGED if self.first is not None else EXIT_OK

    @property
    def all_bitwise_equal(self) -> bool:
        if self.capture is CaptureMode.FINGERPRINT:
            return False  # fingerprints cannot show bitwise equality
        return all(t.ok and (t.metrics is None or t.metrics.bitwise_equal) for s in self.steps for t in s.tensors)
