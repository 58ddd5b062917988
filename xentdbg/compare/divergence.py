"""Compare two step records phase by phase and find the first divergence. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xentdbg.compare.alignment import Alignment, aligned_record, alignment_of
from xentdbg.compare.fingerprint import fingerprint, fingerprints_agree
from xentdbg.compare.matching import Matching, match_activations
from xentdbg.compare.metrics import (
    Summary,
    TensorMetrics,
    Tolerance,
    scratch,
    screen_metrics,
    summarize,
    tensor_metrics,
)
from xentdbg.compare.oracle import Float64Check
from xentdbg.compare.params import Frozen, as_shape
from xentdbg.records import StepRecord, effective_training

PHASE_LABELS = {"flags": "training flag", "updates": "update"}

DECISIVE_PHASES = ("inputs", "flags", "loss", "gradients", "state", "updates", "weights")
"""The phases whose differences make a divergence (exit 1): what a step is fed and what it
changes. Layer outputs (``activations``) are not among them: they locate where inside a
step the two sides part, but two models can differ inside and train identically (a final
LogSoftmax against a Softmax folded into the loss), so an activation difference alone is
reported as a note, never as a divergence. ``updates`` is not captured: it is each step's
``w_after - w_before``, compared at its own scale (:func:`update_tolerance`)."""

F32_ULP_AT_1 = float(np.spacing(np.float32(1.0)))  # 2**-23


def update_tolerance(tol: Tolerance, weight_scale: float) -> Tolerance:
    """The rule for updates ``Δ = w_after - w_before``: ``max|ΔA-ΔB| <= atol_u + rtol * max(|ΔA|,|ΔB|)``.

    ``rtol`` is the phase's. An update is the difference of two stored float32 weights, so
    each side's ``Δ`` carries up to half a float32 ulp of the weight from rounding the new
    weight: ``atol_u = 2 ulp(max|w|) = 2 * 2**-23 * max|w|``, scaled by ``atol / 1e-6``
    when ``--atol`` is raised or lowered. The weights' own rule would hide an update
    that is small beside its weight (a learning rate 0.3% off, biases at 0.1)."""
    from xentdbg.compare.metrics import DEFAULT_ATOL

    atol = 2 * F32_ULP_AT_1 * weight_scale * (tol.atol / DEFAULT_ATOL)
    return Tolerance(rtol=tol.for_phase("updates").rtol, atol=atol)


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
    crossfeed: CrossFeed | None = None  # set when the step was flagged and re-run cross-fed
    alignment: Alignment | None = None  # the batches' digests differ: how A's samples relate to B's
    realigned: Realigned | None = None  # other samples: each side re-run on the other's batch

    @property
    def reordered(self) -> bool:
        """The two sides trained on the same samples in another order, and after
        alignment (:mod:`xentdbg.compare.alignment`) the inputs agree."""
        return (self.alignment is not None and self.alignment.perm is not None
                and all(t.ok for t in self.tensors if t.phase == "inputs"))

    @property
    def divergences(self) -> list[TensorComparison]:
        """Every pair outside tolerance, layer outputs included, in capture order."""
        return [t for t in self.tensors if not t.ok]

    @property
    def flagged(self) -> TensorComparison | None:
        """The first recorded tensor of a decisive phase (:data:`DECISIVE_PHASES`) outside
        tolerance, whether the step introduced the difference or inherited it."""
        return next((t for t in self.tensors if not t.ok and t.phase in DECISIVE_PHASES), None)

    @property
    def first(self) -> TensorComparison | None:
        """The divergence this step introduced, or None.

        Without a cross-feed, the first flagged tensor (:attr:`flagged`). With one
        (:class:`~xentdbg.compare.crossfeed.CrossFeed`), the first divergence of the
        cross-fed, same-weights comparison, or None when the step only inherited drift."""
        if self.crossfeed is not None:
            return self.crossfeed.first
        return self.flagged

    @property
    def deciding(self) -> StepComparison:
        """The comparison :attr:`first` comes from: a cross-fed view, or this step's records."""
        cf = self.crossfeed
        if cf is not None:
            for view in (cf.view_a, cf.view_b):
                if view is not None and view.first is not None and view.first is cf.first:
                    return view
        return self

    @property
    def drift(self) -> bool:
        """Flagged, and float32 rounding: the cross-feed showed the difference inherited,
        or the float64 oracle showed the one the step introduced to be rounding."""
        return self.crossfeed is not None and (self.crossfeed.inherited or self.crossfeed.rounding)

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
class CrossFeed:
    """Both views of one flagged step and what they say (:mod:`xentdbg.compare.crossfeed`).

    ``uncovered``: phases flagged in the records that a side's probe could not re-run
    (``LegacyKerasFunction`` has no optimizer step to re-run); ``unavailable``: why no
    probe ran at all (the views are then None). ``float64``: the float64 oracle's check
    of an introduced difference (:mod:`xentdbg.compare.oracle`), when it was considered."""

    view_a: StepComparison | None
    view_b: StepComparison | None
    uncovered: list[str] = field(default_factory=list)
    unavailable: str | None = None
    recorded: TensorComparison | None = None  # the flagged recorded tensor (for the report)
    float64: Float64Check | None = None

    @property
    def ran(self) -> bool:
        return self.view_a is not None and self.view_b is not None

    @property
    def inherited(self) -> bool:
        """Both views agree in every decisive phase, and every flagged phase was re-run."""
        return (self.ran and not self.uncovered and self.view_a is not None and self.view_b is not None
                and self.view_a.first is None and self.view_b.first is None)

    @property
    def rounding(self) -> bool:
        """The step introduced a difference that the float64 oracle shows is float32 rounding."""
        return self.float64 is not None and self.float64.rounding

    @property
    def introduced(self) -> TensorComparison | None:
        """What the cross-feed alone calls introduced: view A's first divergence, else view
        B's, else (a flagged phase the probes could not re-run, or no probe) the flagged
        recorded tensor; None when inherited."""
        if self.inherited:
            return None
        for view in (self.view_a, self.view_b):
            if view is not None and view.first is not None:
                return view.first
        return self.recorded

    @property
    def first(self) -> TensorComparison | None:
        """The introduced divergence (:attr:`introduced`), unless the float64 oracle showed
        it to be float32 rounding."""
        return None if self.rounding else self.introduced

    @property
    def view(self) -> str:
        """Which numbers :attr:`first` comes from, in words."""
        if self.rounding:
            return "cross-fed, then re-run in float64: float32 rounding"
        if not self.ran:
            return f"recorded (no cross-feed: {self.unavailable})"
        if self.view_a is not None and self.view_a.first is not None:
            return "cross-fed: A's record against B re-run from A's pre-step weights, state and gradients"
        if self.view_b is not None and self.view_b.first is not None:
            return "cross-fed: A re-run from B's pre-step weights, state and gradients against B's record"
        if self.uncovered:
            return "recorded (the probes could not re-run " + ", ".join(self.uncovered) + ")"
        return "cross-fed: both views agree (inherited drift)"

    def to_dict(self) -> dict:
        return {"ran": self.ran, "inherited": self.inherited, "rounding": self.rounding, "view": self.view,
                "uncovered": self.uncovered, "unavailable": self.unavailable,
                "view_a_first": _label(self.view_a), "view_b_first": _label(self.view_b),
                "float64": self.float64.to_dict() if self.float64 is not None else None}


@dataclass
class Realigned:
    """What remains once the data are lined up, at a step whose two sides trained on
    other samples (:data:`xentdbg.compare.alignment.SAMPLES`): each side's step re-run on
    the batch the other side used, from that side's pre-step weights, state and gradients
    (the engine's cross-feed with batches, :meth:`xentdbg.adapters.base.Adapter.evaluate`).

    - **view A**: A's record against B re-run on A's batch from A's pre-step values;
    - **view B**: A re-run on B's batch from B's pre-step values against B's record.

    Both sides of a view ran one batch from one set of weights, so a decisive tensor
    that still differs is a difference the data order does not explain (:attr:`first`).
    ``uncovered``: decisive phases differing in the records that a probe could not re-run
    (``LegacyKerasFunction`` has no optimizer step); ``unavailable``: why no probe ran."""

    view_a: StepComparison | None
    view_b: StepComparison | None
    uncovered: list[str] = field(default_factory=list)
    unavailable: str | None = None
    # the deciding view's records and the pre-step values both its sides ran from (for the diagnosis)
    records: tuple[StepRecord, StepRecord] | None = field(default=None, repr=False)
    before: tuple[StepRecord, StepRecord] | None = field(default=None, repr=False)

    @property
    def ran(self) -> bool:
        return self.view_a is not None and self.view_b is not None

    @property
    def first(self) -> TensorComparison | None:
        """The first divergence remaining after alignment: view A's, else view B's."""
        for view in (self.view_a, self.view_b):
            if view is not None and view.first is not None:
                return view.first
        return None

    @property
    def deciding(self) -> StepComparison | None:
        """The view :attr:`first` comes from (view A when neither has one)."""
        for view in (self.view_a, self.view_b):
            if view is not None and view.first is not None:
                return view
        return self.view_a

    @property
    def whole_story(self) -> bool:
        """The data order explains the step: both views agree in every decisive tensor, and
        every phase that differs in the records was re-run."""
        return self.ran and not self.uncovered and self.first is None

    @property
    def view(self) -> str:
        if not self.ran:
            return f"not re-run on the other side's batch ({self.unavailable})"
        if self.view_a is not None and self.view_a.first is not None:
            return "aligned: A's record against B re-run on A's batch from A's pre-step weights, state and gradients"
        if self.view_b is not None and self.view_b.first is not None:
            return "aligned: A re-run on B's batch from B's pre-step weights, state and gradients against B's record"
        if self.uncovered:
            return "aligned: both views agree, but the probes could not re-run " + ", ".join(self.uncovered)
        return "aligned: each side re-run on the other's batch from the same weights agrees in every decisive tensor"

    def to_dict(self) -> dict:
        return {"ran": self.ran, "whole_story": self.whole_story, "view": self.view, "uncovered": self.uncovered,
                "unavailable": self.unavailable, "first": self.first.label if self.first is not None else None,
                "view_a_first": _label(self.view_a), "view_b_first": _label(self.view_b)}


def _label(view: StepComparison | None) -> str | None:
    return view.first.label if view is not None and view.first is not None else None


@dataclass
class Pairing:
    """Which tensors of A are compared with which of B, fixed once from the first step."""

    params: list[tuple[int, int]]
    state: list[tuple[int, int]]
    activations: Matching | None = None
    flags: list[tuple[str, str]] | None = None
    frozen: list[Frozen] = field(default_factory=list)  # a parameter one side trains, the other holds as state

    @staticmethod
    def frozen_pair(f: Frozen, a: StepRecord, b: StepRecord) -> tuple[tuple[str, object], tuple[str, object]] | None:
        """``((A name, A's tensor), (B name, B's tensor))`` of a frozen pair: the trainer's
        ``weights`` against the holder's ``state``; None where either is not recorded."""
        trainer, holder = (a, b) if f.trainer == "A" else (b, a)
        w, s = trainer.tensors.get("weights", []), holder.tensors.get("state", [])
        if f.param >= len(w) or f.state >= len(s):
            return None
        return (w[f.param], s[f.state]) if f.trainer == "A" else (s[f.state], w[f.param])

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
                 detail: bool = True, before: tuple[StepRecord | None, StepRecord | None] | None = None,
                 updates: bool = True, before_scales: dict[tuple[str, str], float] | None = None) -> StepComparison:
    """All tensor comparisons of one step, in phase order (see :mod:`xentdbg.records`).

    Every pair is first screened (:func:`~xentdbg.compare.metrics.screen_metrics`: the
    tolerance rule's inputs only); a pair outside tolerance then gets the full metrics
    (``max_rel``, ``cosine``) and value summaries. ``detail=False`` skips that second stage:
    the report details the step of the first divergence only, so later steps need not pay.

    ``before``: both sides' weights before the step (the previous records, or records
    holding the initial weights), for the ``updates`` phase (``updates=False`` skips it:
    the fingerprint pass). ``before_scales``: :func:`weight_scales` of the comparison of
    the records in ``before``, when the caller has it; the updates' tolerance then reuses
    those ``max(|A|, |B|)`` instead of reading the weights before the step again.

    When the batches' digests differ but they hold the same samples in another order
    (:mod:`xentdbg.compare.alignment`), A's per-sample tensors (the inputs' sums, layer
    outputs whose leading axis is the batch) are compared in B's sample order, and the
    loss, gradients, state and weights as they are: a mean over the batch does not depend
    on its order. ``StepComparison.alignment`` says how the batches relate."""
    pairing.settle(a, b)
    out: list[TensorComparison] = []
    skipped: list[str] = []
    step = a.step

    def tensors(phase: str, pairs: list[tuple[int, int]], reverse: bool = False) -> None:
        ta, tb = a.tensors.get(phase, []), b.tensors.get(phase, [])
        if not ta or not tb:
            return  # light capture (``--fingerprint``) has no gradients on some sides
        for i, j in (reversed(pairs) if reverse else pairs):
            one(phase, *ta[i], *tb[j])

    def one(phase: str, na: str, xa: object, nb: str, xb: object, held: tuple[str, str] | None = None) -> None:
        """Compare A's ``na`` with B's ``nb``; ``held``: the phases each was recorded in (a
        frozen pair: one side's weights, the other's state)."""
        xa, xb = np.asarray(xa), np.asarray(xb)  # reads lazily stored tensors (traces) one pair at a time
        pa, pb = held or (phase, phase)
        fa, fb = (pa, na) in a.fingerprinted, (pb, nb) in b.fingerprinted
        if fa or fb:
            ok = fingerprints_agree(xa if fa else fingerprint(xa), xb if fb else fingerprint(xb),
                                    tol.for_phase(phase))
            out.append(TensorComparison(step, phase, na, nb, ok, note="fingerprints (sum, norm, max|x|) differ"
                                        if not ok else "fingerprint"))
            return
        xb = as_shape(xb, xa.shape)
        m = screen_metrics(xa, xb)
        ok = m.within(tol.for_phase(phase))
        sa = sb = None
        if detail and not ok:  # the report shows these for divergent tensors only
            m, sa, sb = tensor_metrics(xa, xb), summarize(xa), summarize(xb)
        out.append(TensorComparison(step, phase, na, nb, ok, m, sa, sb,
                                    note="" if m.same_shape else "shapes differ"))

    # inputs: exact identity (digests), or the same samples in another order (alignment)
    alignment = alignment_of(a, b)
    out += _inputs(a, b, alignment, detail)
    if alignment is not None and alignment.perm is not None:
        a = aligned_record(a, alignment.perm)  # from here on A's per-sample tensors in B's sample order
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
        if pairing.activations.unpaired:
            skipped.append("activations: layer outputs aligned by shape and order; unpaired (a layer one side "
                           "adds, such as Rescaling, Reshape or a transpose): "
                           + ", ".join(pairing.activations.unpaired))
    elif a.tensors.get("activations") and b.tensors.get("activations"):
        skipped.append("activations: " + "; ".join(pairing.activations.problems if pairing.activations else []))
    elif a.tensors.get("activations") or b.tensors.get("activations"):
        skipped.append("activations: only one side records layer outputs")
    tensors("loss", [(0, 0)])
    tensors("gradients", pairing.params, reverse=True)  # nearest the loss first
    tensors("state", pairing.state)
    # the weights before the updates they follow in the output: their scales bound the updates'
    mark = len(out)
    tensors("weights", pairing.params)
    for f in pairing.frozen:
        pair = pairing.frozen_pair(f, a, b)
        if pair is not None:
            one("weights", *pair[0], *pair[1], held=_held(f))
    weights = out[mark:]
    del out[mark:]
    if updates and before is not None and before[0] is not None and before[1] is not None:
        _updates(out, step, a, b, before[0], before[1], pairing, tol, detail,
                 (_scales(weights), before_scales or {}))
    out += weights
    return StepComparison(step, out, a.loss, b.loss, skipped, dict(a.flags), dict(b.flags), alignment=alignment)


def _inputs(a: StepRecord, b: StepRecord, alignment: Alignment | None, detail: bool) -> list[TensorComparison]:
    """The ``inputs`` phase: ``x`` and ``y`` agree when their digests do (exact identity),
    or when the two batches hold the same samples in another order
    (:func:`~xentdbg.compare.alignment.align`): then the per-sample sums are compared in
    the aligned order, ``A[perm]`` against ``B``. Otherwise they differ, and the
    per-sample sums in batch order give the metrics."""
    out = []
    ia, ib = dict(a.tensors.get("inputs", [])), dict(b.tensors.get("inputs", []))
    perm = alignment.perm if alignment is not None else None
    for key in ("x", "y"):
        if key in ia and key in ib:
            same = a.digests.get(key) == b.digests.get(key)
            xa, xb = np.asarray(ia[key]), np.asarray(ib[key])
            note = "" if same else "different batch (per-sample sums compared)"
            if not same and perm is not None:
                xa = xa[perm]
                same = bool(np.array_equal(xa, xb))
                note = ("same samples in another order: per-sample sums compared aligned" if same
                        else "aligned per-sample sums differ")
            m, sa, sb = screen_metrics(xa, xb), None, None
            if detail and not same:
                m, sa, sb = tensor_metrics(xa, xb), summarize(xa), summarize(xb)
            out.append(TensorComparison(a.step, "inputs", key, key, same, m, sa, sb,
                                        a.digests.get(key), b.digests.get(key), note=note))
    return out


def weight_scales(cmp: StepComparison) -> dict[tuple[str, str], float]:
    """``max(|A|, |B|)`` of each weights pair ``cmp`` compared, by ``(name_a, name_b)``:
    for the next step's ``before_scales`` (:func:`compare_step`)."""
    return _scales([t for t in cmp.tensors if t.phase == "weights"])


def _scales(weights: list[TensorComparison]) -> dict[tuple[str, str], float]:
    """The metrics' ``scale`` of each pair that is finite throughout (not
    :attr:`~xentdbg.compare.metrics.TensorMetrics.partial`: a non-finite element on
    either side leaves a position out): there it is ``max(|A|, |B|)`` over every element,
    as :func:`_absmax` of each side gives it."""
    return {(t.name_a, t.name_b): t.metrics.scale for t in weights
            if t.metrics is not None and t.metrics.same_shape and not t.metrics.partial}


def _updates(out: list[TensorComparison], step: int, a: StepRecord, b: StepRecord, pa: StepRecord,
             pb: StepRecord, pairing: Pairing, tol: Tolerance, detail: bool,
             scales: tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]) -> None:
    """The ``updates`` phase: ``w_after - w_before`` per parameter pair in the weights' own
    float width (within one rounding of ``Δ``, far below the ulp of ``w`` that
    :func:`update_tolerance` allows), under :func:`update_tolerance`.
    Tensors held as fingerprints on either side, before or after, are skipped.
    ``scales``: ``max(|A|, |B|)`` of the weights after and before the step where the
    weights' comparisons already read them (:func:`_scales`), by names."""
    wa, wb, va, vb = (r.tensors.get("weights", []) for r in (a, b, pa, pb))
    if not (wa and wb and va and vb):
        return
    quads: list[tuple] = [(wa[i], wb[j], va[i], vb[j], "weights", "weights") for i, j in pairing.params]
    for f in pairing.frozen:  # the trainer's weights against the holder's state
        after, before = pairing.frozen_pair(f, a, b), pairing.frozen_pair(f, pa, pb)
        if after is not None and before is not None:
            quads.append((*after, *before, *_held(f)))
    for (na, xa), (nb, xb), (_, ba), (_, bb), phase_a, phase_b in quads:
        if any((p, n) in r.fingerprinted for n, r, p in ((na, a, phase_a), (nb, b, phase_b), (na, pa, phase_a),
                                                          (nb, pb, phase_b))):
            continue
        xa, xb, ba, bb = (np.asarray(t) for t in (xa, xb, ba, bb))
        if xa.shape != ba.shape or xb.shape != bb.shape:
            continue
        xb, bb = as_shape(xb, xa.shape), as_shape(bb, xa.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            da = np.subtract(xa, ba, out=scratch("update_a", np.result_type(xa, ba), xa.shape))
            db = np.subtract(xb, bb, out=scratch("update_b", np.result_type(xb, bb), xa.shape))
        m = screen_metrics(da, db)
        scale_after, scale_before = scales[0].get((na, nb)), scales[1].get((na, nb))
        scale = max(max(_absmax(xa), _absmax(xb)) if scale_after is None else scale_after,
                    max(_absmax(ba), _absmax(bb)) if scale_before is None else scale_before)
        ok = m.within(update_tolerance(tol, scale))
        sa = sb = None
        if detail and not ok:
            m, sa, sb = tensor_metrics(da, db), summarize(da), summarize(db)
        out.append(TensorComparison(step, "updates", na, nb, ok, m, sa, sb,
                                    note="" if m.same_shape else "shapes differ"))


def _held(f: Frozen) -> tuple[str, str]:
    """The phases A's and B's tensor of a frozen pair are recorded in."""
    return ("weights", "state") if f.trainer == "A" else ("state", "weights")


def _absmax(x: np.ndarray) -> float:
    """``max|x|`` from two reductions (0 for an empty or non-finite tensor)."""
    if x.size == 0:
        return 0.0
    value = float(max(-x.min(), x.max()))
    return value if np.isfinite(value) else 0.0
