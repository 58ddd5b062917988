"""``xentdbg loss``: one cross-entropy, every installed implementation, and why they differ.

>>> from xentdbg.losses import evaluate
>>> report = evaluate("categorical_crossentropy", [[0, 1], [1, 0]], [[0, 1], [0, 1]])  # doctest: +SKIP
>>> report.result("keras-tf").reduced, report.result("reference").reduced  # doctest: +SKIP
(8.05904769897461, nan)

Implementations (:data:`IMPLEMENTATIONS`): ``keras-tf`` (Keras 3, TensorFlow backend),
``keras-jax`` (Keras 3, JAX backend), ``tf-keras`` (Keras 2), ``optax`` (logits only) and
``reference`` (the textbook formula in float64, no clipping). Each library runs in its own
process; this package imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xentdbg.errors import UsageError
from xentdbg.findings import Finding, jsonable
from xentdbg.losses.findings import explain, identical_groups
from xentdbg.losses.implementations import DEFAULT_TIMEOUT, IMPLEMENTATIONS, ImplResult
from xentdbg.losses.inputs import LOSSES, PRESETS, LossInputs, canonical_loss, prepare, preset, read_inputs
from xentdbg.losses.models import reference

__all__ = ["DEFAULT_TIMEOUT", "IMPLEMENTATIONS", "LOSSES", "PRESETS", "Finding", "ImplResult", "LossInputs",
           "LossReport", "canonical_loss", "evaluate", "evaluate_inputs", "parse_implementations", "preset",
           "read_inputs", "reference"]


@dataclass(frozen=True)
class LossReport:
    """What ``xentdbg loss`` shows: the inputs, one result per implementation, the findings."""

    inputs: LossInputs
    results: tuple[ImplResult, ...]
    findings: tuple[Finding, ...]
    identical: tuple[tuple[str, ...], ...]  # groups of implementations with equal values throughout

    @property
    def loss(self) -> str:
        return self.inputs.loss

    @property
    def from_logits(self) -> bool:
        return self.inputs.from_logits

    def result(self, key: str) -> ImplResult:
        for r in self.results:
            if r.key == key:
                return r
        raise KeyError(key)

    @property
    def failed(self) -> tuple[ImplResult, ...]:
        """Implementations that raised, crashed or timed out."""
        return tuple(r for r in self.results if r.status == "error")

    @property
    def exit_code(self) -> int:
        """0: evaluated (differences are the expected outcome); 3: an implementation failed."""
        return 3 if self.failed else 0

    def to_dict(self) -> dict:
        """Plain data for ``--json``; NaN and infinities as the strings "nan", "inf", "-inf"."""
        return jsonable({
            "schema": 2, "loss": self.loss,  # 2: findings carry "evidence" (was "lines")
            "from_logits": self.from_logits, "exit_code": self.exit_code,
            "y_true": self.inputs.y_true.tolist(), "y_pred": self.inputs.y_pred.tolist(),
            "notes": list(self.inputs.notes),
            "implementations": [_result_dict(r) for r in self.results],
            "identical": [list(g) for g in self.identical],
            "findings": [f.to_dict() for f in self.findings],
        })


def parse_implementations(text: str | None) -> tuple[str, ...]:
    """``"keras-tf,reference"`` -> ``("keras-tf", "reference")``; None -> all of them."""
    if text is None:
        return tuple(IMPLEMENTATIONS)
    keys = tuple(k.strip().lower().replace("_", "-") for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in IMPLEMENTATIONS]
    if unknown or not keys:
        raise UsageError(f"--only {text!r}: unknown implementation {', '.join(unknown) or '(none given)'}.",
                         hint=f"Choose from {', '.join(IMPLEMENTATIONS)}, comma-separated.")
    return tuple(k for k in IMPLEMENTATIONS if k in keys)  # report order, whatever the order given


def evaluate(name: str, y_true, y_pred, from_logits: bool = False, implementations=None,
             timeout: float = DEFAULT_TIMEOUT) -> LossReport:
    """Evaluate loss ``name`` on ``y_true``/``y_pred`` (arrays or nested lists) in each implementation.

    ``implementations``: keys of :data:`IMPLEMENTATIONS` (or a comma-separated string); defaults to all.
    Raises :class:`~xentdbg.errors.UsageError` for a bad name, shape or value.
    """
    keys = parse_implementations(implementations) if isinstance(implementations, str) or implementations is None \
        else parse_implementations(",".join(implementations))
    return evaluate_inputs(prepare(name, y_true, y_pred, from_logits), keys, timeout)


def evaluate_inputs(inputs: LossInputs, keys: tuple[str, ...], timeout: float = DEFAULT_TIMEOUT) -> LossReport:
    """:func:`evaluate` on already validated inputs."""
    from xentdbg.losses.implementations import run

    results = tuple(run(inputs, keys, timeout))
    return LossReport(inputs, results, explain(inputs, list(results)), tuple(identical_groups(list(results))))


def _result_dict(r: ImplResult) -> dict:
    arrays = {name: None if a is None else np.asarray(a, dtype=np.float64).tolist()
              for name, a in (("per_sample", r.per_sample), ("gradient", r.gradient))}
    return {"key": r.key, "label": r.label, "status": r.status, "call": r.call, "version": r.version,
            "dtype": r.dtype, "reduced": r.reduced, **arrays, "via_activation": r.via_activation,
            "message": r.message, "seconds": round(r.seconds, 3)}

