"""What a probe sees: both sides' records of the step of the first divergence, what
each side held before that step, the batch, and the findings it may return
(:class:`xentdbg.findings.Finding`, re-exported here for the probes). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xentdbg.compare.divergence import Pairing, StepComparison, TensorComparison
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.oracle import Float64Check
from xentdbg.compare.params import as_shape
from xentdbg.findings import Finding
from xentdbg.records import SideInfo, StepRecord

__all__ = ["Context", "Finding", "Named", "Side", "fmt", "ratio"]

Named = list[tuple[str, np.ndarray]]


@dataclass
class Side:
    """One side's view of the step: its record, its weights and state before it, and
    the batch it trained on (``x``, ``y``: located in the dataset by the record's
    per-sample sums and checked against its digests, :func:`xentdbg.diagnose.build.located_batch`;
    ``x`` None when not found, ``y`` None too when the side fed those images with labels
    other than the dataset's).

    When the two sides trained on the same samples in another order, side A's record
    and batch are given in B's sample order (:func:`xentdbg.compare.alignment.aligned_record`):
    every per-sample tensor of both sides then lines up with the same rows of the batch."""

    label: str  # "A" or "B"
    info: SideInfo
    record: StepRecord
    weights_before: Named
    state_before: Named
    x: np.ndarray | None = None
    y: np.ndarray | None = None

    def tensors(self, phase: str) -> Named:
        return [(n, np.asarray(a)) for n, a in self.record.tensors.get(phase, [])]

    @property
    def loss(self) -> float:
        return self.record.loss

    @property
    def activations(self) -> Named:
        return self.tensors("activations")

    @property
    def replicas(self) -> int:
        """How many replicas the side trained on: its ``tf.distribute`` strategy's
        ``num_replicas_in_sync``, as its adapter reports it under ``replicas``; 1 on one device."""
        return self.info.replicas

    def replica_tensors(self, phase: str) -> list[Named]:
        """Each replica's tensors of ``phase`` before the reduction
        (:attr:`xentdbg.records.StepRecord.replicas`), in replica order; empty on one device."""
        return [[(n, np.asarray(a)) for n, a in r.get(phase, [])] for r in self.record.replicas]

    @property
    def library(self) -> str:
        """The Keras or Flax library that ran the side's model: ``tf_keras`` (Keras 2) or
        ``keras`` (Keras 3), as the Keras adapters report it under ``library`` (a worker
        may have imported both), ``flax``, or ``""``."""
        framework = self.info.framework
        return framework.get("library") or ("flax" if "flax" in framework else "")


@dataclass
class Context:
    """Everything the probes read. ``x``/``y``: the batch of the step when both sides
    trained on the same one, in the records' (aligned) order (None otherwise: each
    side's own batch is :attr:`Side.x`, :attr:`Side.y`); ``history``: every compared step so far."""

    step: StepComparison
    a: Side
    b: Side
    pairing: Pairing
    tolerance: Tolerance
    x: np.ndarray | None
    y: np.ndarray | None
    history: list[StepComparison]
    noise: dict[str, float] | None = None  # --calibrate: run-to-run max relative difference per phase
    float64: Float64Check | None = None  # the float64 oracle's check of this step, when it ran

    @property
    def first(self) -> TensorComparison:
        first = self.step.first
        if first is None:
            raise ValueError("a Context describes a step that diverged")
        return first

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b

    def runs(self, label: str, library: str) -> bool:
        """Whether side ``label`` (``"A"`` or ``"B"``) ran its model with ``library``
        (:attr:`Side.library`: ``keras``, ``tf_keras``, ``flax``)."""
        return (self.a if label == "A" else self.b).library == library

    def divergent(self, phase: str) -> list[TensorComparison]:
        return [t for t in self.step.divergences if t.phase == phase]

    def agrees(self, phase: str) -> bool:
        return not self.divergent(phase)

    def param_triples(self, phase: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(name, A's tensor, B's tensor)`` for paired parameters in ``phase`` (gradients, weights)."""
        ta, tb = self.a.tensors(phase), self.b.tensors(phase)
        if not ta or not tb:
            return []
        return [(ta[i][0], ta[i][1], as_shape(tb[j][1], np.shape(ta[i][1]))) for i, j in self.pairing.params]

    def before_triples(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        wa, wb = self.a.weights_before, self.b.weights_before
        return [(wa[i][0], np.asarray(wa[i][1]), as_shape(wb[j][1], np.shape(wa[i][1])))
                for i, j in self.pairing.params]

    def state_triples(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """``(name, A before, A after, B before, B after)`` for paired state tensors."""
        sa, sb = self.a.tensors("state"), self.b.tensors("state")
        ba, bb = self.a.state_before, self.b.state_before
        if not sa or not sb or not ba or not bb:
            return []
        return [(sa[i][0], np.asarray(ba[i][1]), sa[i][1], np.asarray(bb[j][1]), sb[j][1])
                for i, j in self.pairing.state]


def ratio(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Least-squares ``c`` with ``a ≈ c b`` and the relative residual ``|a - c b| / |a|``.

    ``c = <a, b> / <b, b>`` in float64; the residual is 0 for an exact constant factor."""
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    bb = float(b64 @ b64)
    if bb == 0.0 or not np.all(np.isfinite(a64)) or not np.all(np.isfinite(b64)):
        return float("nan"), float("inf")
    c = float(a64 @ b64) / bb
    na = float(np.linalg.norm(a64))
    return c, (float(np.linalg.norm(a64 - c * b64)) / na if na else 0.0)


def fmt(x: float, digits: int = 6) -> str:
    return f"{x:.{digits}g}"
