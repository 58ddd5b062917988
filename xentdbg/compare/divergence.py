"""Compare two step records phase by phase and find the first divergence. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xentdbg.compare.fingerprint import fingerprint, fingerprints_agree
from xentdbg.compare.matching import Matching, match_activations
from xentdbg.compare.metrics import Summary, TensorMetrics, Tolerance, screen_metrics, summarize, tensor_metrics
from xentdbg.records import StepRecord, effective_training

PHASE_LABELS = {"flags": "training flag"}

DECISIVE_PHASES = ("inputs", "flags", "loss", "gradients", "state", "weights")
"""The phases whose differences make a divergence (exit 1): what a step is fed and what it
changes. Layer outputs (``activations``) are not among them: they locate where inside a
step the two sides part, but two models can differ inside and train identically (a final
LogSoftmax against a Softmax folded into the loss), so an activation difference alone is
reported as a note, never as a divergence."""


@dataclass(frozen=True)
class TensorComparison:
    """One compared pair: where it is, how it differs, and whether that is within tolerance."""

    step: int
    phase: str
    name_a: str
    name_b: str
    ok: bool
    metrics: TensorMetrics | None = None  # None for flags and digests
    summary_a: Summary | None = None
    summary_b: Summary | None = None
    value_a: object = None  # flags: the training values; inputs: the digests
    value_b: object = None
    note: str = ""

    @property
    def label(self) -> str:
        name = self.name_a if self.name_a == self.name_b else f"{self.name_a} | {self.name_b}"
        return f"step {self.step} · {PHASE_LABELS.get(self.phase, self.phase)} · {name}"


@dataclass
class StepComparison:
    step: int
    tensors: list[TensorComparison]
    loss_a: float
    loss_b: float
    skipped: list[str] = field(default_factory=list)  # phases or notes not compared
    flags_a: dict = field(default_factory=dict)  # training value each layer received
    flags_b: dict = field(default_factory=dict)

    @property
    def divergences(self) -> list[TensorComparison]:
        """Every pair outside tolerance, layer outputs included, in capture order."""
        return [t for t in self.tensors if not t.ok]

    @property
    def first(self) -> TensorComparison | None:
        """The first divergence of a decisive phase (:data:`DECISIVE_PHASES`), or None."""
        return next((t for t in self.tensors if not t.ok and t.phase in DECISIVE_PHASES), None)

    @property
    def first_activation(self) -> TensorComparison | None:
        """The first layer output outside tolerance: where inside the step the sides part."""
        return next((t for t in self.tensors if not t.ok and t.phase == "activations"), None)

    @property
    def max_grad_diff(self) -> float:
        """Largest max-abs gradient difference; NaN when a gradient is non-finite on one side only."""
        grads = [t.metrics for t in self.tensors if t.phase == "gradients" and t.metrics]
        if any(m.nonfinite_mismatch or not m.same_shape for m in grads):
            return float("nan")
        return max((m.max_abs for m in grads), default=float("nan"))


@dataclass
class Pairing:
    """Which tensors of A are compared with which of B, fixed once from the first step."""

    params: list[tuple[int, int]]
    state: list[tuple[int, int]]
    activations: Matching | None = None
    flags: list[tuple[str, str]] | None = None

    def settle(self, a: StepRecord, b: StepRecord) -> None:
        if self.activations is None:
            def shapes(r: StepRecord) -> list[tuple[str, tuple]]:
                return [(n, tuple(np.shape(x))) for n, x in r.tensors.get("activations", [])]

            sa, sb = shapes(a), shapes(b)
            self.activations = match_activations(sa, sb) if sa and sb else Matching([], [])
        if self.flags is None:
            self.flags = _pair_flags(a.flags, b.flags)


def _pair_flags(fa: dict, fb: dict) -> list[tuple[str, str]]:
    """Layers that take ``training`` on both sides: by name when the names agree, else by order."""
    if not fa or not fb:
        return []
    if set(fa) == set(fb):
        return [(n, n) for n in fa]
    return list(zip(fa, fb))  # dicts keep layer order; extra layers on one side are not compared


def compare_step(a: StepRecord, b: StepRecord, pairing: Pairing, tol: Tolerance,
                 detail: bool = True) -> StepComparison:
    """All tensor comparisons of one step, in phase order (see :mod:`xentdbg.records`).

    Every pair is first screened (:func:`~xentdbg.compare.metrics.screen_metrics`: the
    tolerance rule's inputs only); a pair outside tolerance then gets the full metrics
    (``max_rel``, ``cosine``) and value summaries. ``detail=False`` skips that second stage:
    the report details the step of the first divergence only, so later steps need not pay."""
    pairing.settle(a, b)
    out: list[TensorComparison] = []
    skipped: list[str] = []
    step = a.step

    def tensors(phase: str, pairs: list[tuple[int, int]], reverse: bool = False) -> None:
        ta, tb = a.tensors.get(phase, []), b.tensors.get(phase, [])
        if not ta or not tb:
            return  # light capture (``--fingerprint``) has no gradients on some sides
        for i, j in (reversed(pairs) if reverse else pairs):
            (na, xa), (nb, xb) = ta[i], tb[j]
            xa, xb = np.asarray(xa), np.asarray(xb)  # reads lazily stored tensors (traces) one pair at a time
            fa, fb = (phase, na) in a.fingerprinted, (phase, nb) in b.fingerprinted
            if fa or fb:
                ok = fingerprints_agree(xa if fa else fingerprint(xa), xb if fb else fingerprint(xb),
                                        tol.for_phase(phase))
                out.append(TensorComparison(step, phase, na, nb, ok, note="fingerprints (sum, norm, max|x|) differ"
                                            if not ok else "fingerprint"))
                continue
            m = screen_metrics(xa, xb)
            ok = m.within(tol.for_phase(phase))
            sa = sb = None
            if detail and not ok:  # the report shows these for divergent tensors only
                m, sa, sb = tensor_metrics(xa, xb), summarize(xa), summarize(xb)
            out.append(TensorComparison(step, phase, na, nb, ok, m, sa, sb,
                                        note="" if m.same_shape else "shapes differ"))

    # inputs: exact identity (digests); per-sample sums give the metrics
    ia, ib = dict(a.tensors.get("inputs", [])), dict(b.tensors.get("inputs", []))
    for key in ("x", "y"):
        if key in ia and key in ib:
            same = a.digests.get(key) == b.digests.get(key)
            xa, xb = np.asarray(ia[key]), np.asarray(ib[key])
            m, sa, sb = screen_metrics(xa, xb), None, None
            if detail and not same:
                m, sa, sb = tensor_metrics(xa, xb), summarize(xa), summarize(xb)
            out.append(TensorComparison(step, "inputs", key, key, same, m, sa, sb,
                                        a.digests.get(key), b.digests.get(key),
                                        note="" if same else "different batch (per-sample sums compared)"))
    # training flags: exact
    if pairing.flags:
        for la, lb in pairing.flags:
            va, vb = effective_training(a.flags.get(la)), effective_training(b.flags.get(lb))
            out.append(TensorComparison(step, "flags", la, lb, va == vb, value_a=a.flags.get(la),
                                        value_b=b.flags.get(lb)))
    elif a.flags or b.flags:
        skipped.append("flags: only one side reports training flags")
    # activations, forward order
    if pairing.activations and pairing.activations.pairs:
        tensors("activations", pairing.activations.pairs)
    elif a.tensors.get("activations") and b.tensors.get("activations"):
        skipped.append("activations: " + "; ".join(pairing.activations.problems if pairing.activations else []))
    elif a.tensors.get("activations") or b.tensors.get("activations"):
        skipped.append("activations: only one side records layer outputs")
    tensors("loss", [(0, 0)])
    tensors("gradients", pairing.params, reverse=True)  # nearest the loss first
    tensors("state", pairing.state)
    tensors("weights", pairing.params)
    return StepComparison(step, out, a.loss, b.loss, skipped, dict(a.flags), dict(b.flags))
