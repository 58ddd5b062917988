"""What an explanation returns: :class:`Finding` (one cause, with its evidence) and
:class:`Diagnosis` (the findings for one divergent step). Plain data, shared by the
diagnosis of a replay (:mod:`xentdbg.diagnose`) and by ``xentdbg loss``
(:mod:`xentdbg.losses`), and read by every renderer (:mod:`xentdbg.report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One cause that fits the measured numbers.

    ``evidence`` holds the measured facts, one per line, with their numbers; ``fix`` is
    the change that makes the two sides agree. ``fit`` is how completely the cause
    explains what differs (1.0: everything, to the stated residual). ``implementations``
    and ``samples`` name what the cause accounts for (``xentdbg loss``: library keys
    and flat sample indices); ``verified`` is False when a library's numbers could not
    be checked against the model of its source, cited in ``source``."""

    cause: str  # stable id, e.g. "training-flag", "clip"
    title: str
    evidence: tuple[str, ...]
    fix: str = ""
    fit: float = 1.0
    numbers: dict[str, Any] = field(default_factory=dict)
    implementations: tuple[str, ...] = ()
    samples: tuple[int, ...] = ()
    verified: bool = True
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "title": self.title, "evidence": list(self.evidence), "fix": self.fix,
                "fit": self.fit, "numbers": self.numbers, "implementations": list(self.implementations),
                "samples": list(self.samples), "verified": self.verified, "source": self.source}


@dataclass
class Diagnosis:
    """Why one step diverged: ``findings`` best first; ``unexplained`` holds the raw
    evidence when no probe fits; ``errors`` the probes that failed (a bug in xentdbg,
    reported rather than raised, so it never hides the comparison's result)."""

    findings: list[Finding]
    unexplained: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def top(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    @property
    def others(self) -> list[Finding]:
        return self.findings[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "unexplained": self.unexplained,
                "probe_errors": self.errors}


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float written as a string ("nan", "inf", "-inf"),
    tuples as lists: JSON has no NaN or Inf, and reports must stay standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
