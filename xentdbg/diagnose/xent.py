"""Cross-entropy probes: logits vs clipped probabilities (cause 1), the epsilon each side
clips with (cause 2), and the fused softmax cross-entropy gradient with label rows that
do not sum to 1 (cause 3). Pure numpy, float64.

The model's output ``p`` is the last captured activation; its logits ``z`` are either a
captured activation with ``sigmoid(z) = p`` (``softmax(z) = p``), or recomputed from the
last Dense layer: ``z = h W + b`` with ``h`` the activation before it and ``W, b`` the
pre-step weights. Candidate losses, per sample, averaged over the batch (the formulas are
those of ``xentdbg loss``, :mod:`xentdbg.losses.models`, which cites the library lines):

- from logits (exact): BCE ``softplus(z) - y z`` (:func:`~xentdbg.losses.models.binary_from_logits`);
  CCE ``-sum(y * log_softmax(z))`` (:func:`~xentdbg.losses.models.categorical_from_logits`);
- from probabilities clipped to ``[lo, hi]`` in float32: BCE ``-(y log p' + (1-y) log(1-p'))``
  (:func:`~xentdbg.losses.models.binary_clipped`); CCE ``-sum(y log p')`` after Keras'
  renormalisation ``p / sum(p)`` (:func:`~xentdbg.losses.models.categorical_clipped`),
  for Keras' ``[EPSILON, 1 - EPSILON]`` and other epsilons.

A side's loss *matches* a candidate when they agree to 2e-5 relative (float32 logs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xentdbg.diagnose.context import Context, Finding, Side, fmt
from xentdbg.losses.models import (
    EPSILON,
    HIGH,
    LOW,
    binary_clipped,
    binary_from_logits,
    categorical_clipped,
    categorical_from_logits,
    sigmoid,
    softmax,
)

_EPS = (1e-7, 1e-6, 1e-8, 1e-5, 1e-12, 1e-15, float(np.finfo(np.float32).eps))
_MATCH = 2e-5
_MAX_ROWS = 20_000  # equations for the fused-gradient least squares (cause 3)


def _f32(v: float) -> str:
    """A float32 bound as printed: 0.99999988, not 0.9999998807907104."""
    return f"{float(np.float32(v)):.8g}"


def _same(a: float, b: float) -> bool:
    if not (np.isfinite(a) and np.isfinite(b)):
        return bool(np.isnan(a) and np.isnan(b)) or a == b
    return abs(a - b) <= _MATCH * max(abs(a), abs(b), 1e-12)


def _kind(p: np.ndarray, y: np.ndarray) -> str | None:
    if p.ndim != 2 or y is None or y.shape != p.shape:
        return None
    if p.shape[1] == 1:
        return "binary"
    rows = p.astype(np.float64).sum(axis=1)
    return "categorical" if np.allclose(rows, 1.0, atol=1e-3) else None


def _last_dense(side: Side) -> tuple[np.ndarray, np.ndarray] | None:
    """The last kernel/bias pair of the side's pre-step weights, when it is a Dense layer."""
    w = [np.asarray(a, np.float64) for _, a in side.weights_before]
    if len(w) >= 2 and w[-2].ndim == 2 and w[-1].ndim == 1 and w[-2].shape[1] == w[-1].shape[0]:
        return w[-2], w[-1]
    return None


def find_logits(side: Side, x: np.ndarray | None, kind: str) -> tuple[np.ndarray, str] | None:
    """Logits consistent with the side's output, and where they came from."""
    acts = side.activations
    if not acts:
        return None
    p = np.asarray(acts[-1][1], np.float64)
    link = sigmoid if kind == "binary" else softmax

    def consistent(z):
        if z.shape != p.shape or not np.all(np.isfinite(z)):
            return False
        return float(np.max(np.abs(link(z) - p))) <= 1e-4

    for name, a in reversed(acts[:-1]):
        z = np.asarray(a, np.float64)
        if consistent(z):
            return z, f"the captured output of {name}"
    dense = _last_dense(side)
    if dense is not None:
        kernel, bias = dense
        inputs = [np.asarray(a, np.float64) for _, a in acts[:-1]]
        inputs += [np.asarray(x, np.float64)] if x is not None else []
        for h in inputs:
            h2 = h.reshape(h.shape[0], -1)
            if h2.shape[1] == kernel.shape[0]:
                z = h2 @ kernel + bias
                if consistent(z):
                    return z, "recomputed from the last Dense layer (h W + b, pre-step weights)"
    return None


def _models(p, z, y, kind):
    """Every candidate loss: name -> (value, description, clip bounds or None). The
    probabilities are clipped in float32, as the framework holds them."""
    clipped = binary_clipped if kind == "binary" else categorical_clipped
    from_logits = binary_from_logits if kind == "binary" else categorical_from_logits

    def from_probs(lo: float, hi: float) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.mean(clipped(y, p, lo, hi, float32=True)))

    out: dict[str, tuple[float, str, tuple[float, float] | None]] = {}
    if z is not None:
        out["logits"] = (float(np.mean(from_logits(y, z))), "from the logits", None)
    for lo in _EPS:
        for hi_eps in _EPS:
            hi = float(np.float32(1.0 - hi_eps))
            name = f"clip[{lo:g},{hi!r}]"
            sym = lo == hi_eps
            desc = (f"from probabilities clipped to [{lo:g}, 1-{lo:g}]" if sym
                    else f"from probabilities clipped to [{lo:g}, {_f32(hi)}]")
            out[name] = (from_probs(lo, hi), desc, (lo, hi))
    out["textbook"] = (from_probs(0.0, 1.0), "from unclipped probabilities (textbook formula)", (0.0, 1.0))
    return out


def _explain_loss(side: Side, models) -> tuple[str, tuple] | None:
    """The candidate (logits, then Keras' epsilon, then others) matching the side's loss,
    provided it is *distinguishable*: the logits and clipped-probability formulas give
    different values on this side's batch (else nothing saturates and either fits)."""
    order = ["logits", f"clip[{EPSILON:g},{float(HIGH)!r}]", "textbook"]
    order += [k for k in models if k not in order]
    match = next((k for k in order if k in models and _same(models[k][0], side.loss)), None)
    if match is None:
        return None
    if match == "logits":
        if any(_same(v[0], side.loss) for k, v in models.items() if k != "logits"):
            return None
    elif "logits" in models and _same(models["logits"][0], side.loss):
        return None
    return match, models[match]


@dataclass(frozen=True)
class _Outputs:
    """What the loss-formula probes start from: the labels ``y``, each side's output as
    probabilities ``outs[label]`` (its last captured activation; a side whose network
    ends in logits, rows not summing to 1, has them put through softmax or sigmoid and
    its logits kept in ``logits[label]``), their ``kind`` (``"binary"`` or
    ``"categorical"``), the side whose record holds each output (``source[label]``: the
    other side's when this one records no layer outputs) and the evidence line saying so."""

    y: np.ndarray
    outs: dict[str, np.ndarray]
    kind: str
    source: dict[str, Side]
    logits: dict[str, np.ndarray]
    note: str = ""

    def find_logits(self, label: str, x: np.ndarray | None) -> tuple[np.ndarray, str] | None:
        """The logits behind side ``label``'s probabilities: its output itself when the
        network ends in logits, else :func:`find_logits` on its record."""
        if label in self.logits:
            return self.logits[label], "its output (the network ends in logits)"
        return find_logits(self.source[label], x, self.kind)


def as_probabilities(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(probabilities, logits or None)`` of a side's output for labels ``y``: an output in
    [0, 1] whose rows sum to 1 (one column: any in [0, 1]) is probabilities; any other is
    logits, put through softmax (sigmoid)."""
    if out.ndim != 2 or out.shape != y.shape:
        return out, None
    inside = bool(np.all((out >= 0) & (out <= 1)))
    if inside and (out.shape[1] == 1 or _kind(out, y) is not None):
        return out, None
    return (sigmoid(out) if out.shape[1] == 1 else softmax(out)), out


def _outputs(ctx: Context) -> _Outputs | None:
    """:class:`_Outputs` when the losses differ and both outputs are finite and of the same
    kind for these labels; None otherwise (non-finite predictions: no loss formula explains
    them, see diagnose.nonfinite).

    A side that records no layer outputs (a JAX loss function without stax ``layers``)
    takes the other side's, when the two held bitwise the same weights before the step
    and trained on the same batch: then both models computed the same output, and a loss
    formula reproducing the side's loss from it is the evidence."""
    if ctx.agrees("loss") or ctx.y is None:
        return None
    source = {s.label: s for s in ctx.sides if s.activations}
    note = ""
    if len(source) == 1:
        (label, side), = source.items()
        missing = "B" if label == "A" else "A"
        same = ctx.agrees("inputs") and all(np.array_equal(a, b) for _, a, b in ctx.before_triples())
        if not same or not ctx.before_triples():
            return None
        source[missing] = side
        note = (f"side {missing} records no layer outputs; its output is side {label}'s: both held bitwise the same "
                "weights before the step and trained on the same batch")
    elif not source:
        return None
    y = np.asarray(ctx.y, np.float64)
    outs, logits = {}, {}
    for label, side in source.items():
        out = np.asarray(side.activations[-1][1], np.float64)
        if not np.all(np.isfinite(out)):
            return None
        outs[label], z = as_probabilities(out, y)
        if z is not None:
            logits[label] = z
    kind = _kind(outs["A"], y)
    if kind is None or _kind(outs["B"], y) != kind:
        return None
    return _Outputs(y, outs, kind, source, logits, note)


def logits_vs_probabilities(ctx: Context) -> list[Finding]:
    """Causes 1 and 2: which formula and which epsilon reproduce each side's loss."""
    start = _outputs(ctx)
    if start is None:
        return []
    y, outs, kind = start.y, start.outs, start.kind
    explained, logits = {}, {}
    for side in ctx.sides:
        found = start.find_logits(side.label, ctx.x)
        logits[side.label] = found
        models = _models(outs[side.label], found[0] if found else None, y, kind)
        explained[side.label] = (_explain_loss(side, models), models)
    (ea, models_a), (eb, models_b) = explained["A"], explained["B"]
    if ea is None or eb is None or ea[0] == eb[0]:
        return []
    loss_name = "binary" if kind == "binary" else "categorical"
    ev = [f"side {s.label}'s loss {fmt(s.loss)} = {loss_name} cross-entropy {e[1][1]} (recomputed {fmt(e[1][0])})"
          for s, e in ((ctx.a, ea), (ctx.b, eb))] + ([start.note] if start.note else [])
    findings = []
    keys = {"A": ea[0], "B": eb[0]}
    if "logits" in keys.values():
        prob_side = "A" if keys["A"] != "logits" else "B"
        logit_side = "B" if prob_side == "A" else "A"
        prob, other = (ctx.a, ctx.b) if prob_side == "A" else (ctx.b, ctx.a)
        prob_models = models_a if prob_side == "A" else models_b
        lo, hi = (ea if prob_side == "A" else eb)[1][2]
        out = outs[prob_side].astype(np.float32)
        outside = int(np.count_nonzero((out < LOW) | (out > HIGH)))
        exact = int(np.count_nonzero((out == 0) | (out == 1)))
        ev.append(f"{outside} of {out.size} predictions ({100 * outside / out.size:.1f}%) are outside "
                  f"[{EPSILON:g}, 1-{EPSILON:g}]; {exact} are exactly 0 or 1 in float32")
        numbers = {"prob_side": prob_side, "outside_share": outside / out.size, "exact_0_or_1": exact,
                   "clip": [lo, hi]}
        plus = _log_plus(out.astype(np.float64), y, kind, lo) if lo > 0 else None
        if plus is not None and _same(plus, prob.loss):
            ev.append(f"a hand-written -mean(y·log(p + {lo:g})) gives {fmt(plus)} too: on this batch it and the clip "
                      f"at {lo:g} cannot be told apart by the loss (both put {lo:g} where p is 0)")
            numbers["log_plus_eps"] = plus
        if "logits" in prob_models:
            found = logits[prob_side]  # found: "logits" is among its candidates
            z_from = found[1] if found else ""
            logit_loss = prob_models["logits"][0]
            ev.append(f"recomputing side {prob_side}'s loss from its logits ({z_from}) gives {fmt(logit_loss)}: "
                      f"|ΔL| {fmt(abs(prob.loss - other.loss))} -> {fmt(abs(logit_loss - other.loss))}")
            numbers["loss_from_logits"] = logit_loss
        kinds = {"A": ctx.a.info.kind, "B": ctx.b.info.kind}
        side_info = (ctx.a if logit_side == "A" else ctx.b).info
        if kinds[logit_side] in ("KerasFit", "KerasLoop") and side_info.framework.get("backend") == "tensorflow":
            ev.append(f"side {logit_side} is Keras on TensorFlow: its cross-entropy finds the logits cached on the "
                      "sigmoid/softmax output (output._keras_logits, keras/src/backend/tensorflow/nn.py ~L1267)")
        title = f"Side {logit_side} computes the cross-entropy from logits, side {prob_side} from " + (
            "probabilities without clipping (log 0)" if (lo, hi) == (0.0, 1.0) else "clipped probabilities")
        findings.append(Finding(
            "logits-vs-probabilities", title, tuple(ev),
            f"Compute side {prob_side}'s loss from the logits: drop the final activation and use a from-logits loss "
            "(optax.sigmoid_binary_cross_entropy / softmax_cross_entropy, or Keras from_logits=True).",
            numbers=numbers))
        if (lo, hi) != (0.0, 1.0):
            findings.append(_epsilon_finding(prob_side, lo, hi, out, fit=0.9))
    else:
        (lo_a, hi_a), (lo_b, hi_b) = ea[1][2], eb[1][2]
        preds = outs["A"]
        ev.append(f"{int(np.count_nonzero((preds <= max(lo_a, lo_b)) | (preds >= min(hi_a, hi_b))))} of {preds.size} "
                  "predictions lie where the two clips differ")
        findings.append(Finding(
            "epsilon", "The two sides clip probabilities with different epsilons", tuple(ev),
            f"Use the same clip on both sides (Keras: [{EPSILON:g}, 1-{EPSILON:g}]), or compute both losses from "
            "logits.",
            numbers={"clip_a": [lo_a, hi_a], "clip_b": [lo_b, hi_b]}))
    return findings


def _epsilon_finding(side: str, lo: float, hi: float, out: np.ndarray, fit: float) -> Finding:
    below, above = int(np.count_nonzero(out < np.float32(lo))), int(np.count_nonzero(out > np.float32(hi)))
    keras = lo == EPSILON and np.float32(hi) == HIGH
    who = "Keras' epsilon 1e-7" if keras else "its own epsilon, not Keras' 1e-7"
    return Finding(
        "epsilon", f"Side {side} clips probabilities to [{lo:g}, {_f32(hi)}] ({who})",
        (f"{below} predictions below {lo:g} and {above} above {_f32(hi)} are clipped: each contributes at most "
         f"-log({lo:g}) = {fmt(-np.log(lo))} (or -log(1-{_f32(hi)}) = {fmt(-np.log1p(-np.float64(np.float32(hi))))}) "
         "and no gradient",),
        "Clipping hides saturated predictions from the gradient; compute the loss from logits instead.",
        fit=fit, numbers={"side": side, "clip": [lo, hi], "below": below, "above": above})


def fused_softmax_xent(ctx: Context) -> list[Finding]:
    """Cause 3: equal losses, gradient difference ``softmax * (sum(labels) - 1) / N``.

    The fused op's gradient w.r.t. the logits is ``p - t``; the true one is ``p * s - t``
    with ``s = sum(t)`` per row. With per-sample ``u`` the difference of the last Dense
    layer's gradients is ``dW = h^T (p * u) / N`` and ``db = sum(p * u) / N``: linear in
    ``u``, solved by least squares. ``s = 1 - u`` if A is the fused side, ``1 + u`` if B is;
    the loss ``-mean(s * log p[label])`` tells which."""
    if not ctx.agrees("loss") or ctx.agrees("gradients") or ctx.y is None or not ctx.a.activations:
        return []
    p = np.asarray(ctx.a.activations[-1][1], np.float64)
    y = np.asarray(ctx.y, np.float64)
    if _kind(p, y) != "categorical" or not np.allclose(y.sum(axis=1), 1.0):
        return []
    grads = ctx.param_triples("gradients")
    if len(grads) < 2:
        return []
    (kname, ka, kb), (bname, ba, bb) = grads[-2], grads[-1]
    if ka.ndim != 2 or ba.ndim != 1:
        return []
    n, c = p.shape
    hs = [np.asarray(a, np.float64) for _, a in ctx.a.activations[:-1]]
    hs += [np.asarray(ctx.x, np.float64)] if ctx.x is not None else []
    h = next((v.reshape(n, -1) for v in reversed(hs) if v.reshape(n, -1).shape[1] == ka.shape[0]), None)
    if h is None:
        return []
    # rows: kernel elements (i, j) and every bias element j; columns: samples. The kernel
    # rows of the first _MAX_ROWS // C input features keep the system small (N unknowns).
    rows = min(h.shape[1], max(1, _MAX_ROWS // c))
    dk = (np.asarray(ka, np.float64) - kb)[:rows]
    m_kernel = np.einsum("ni,nj->ijn", h[:, :rows], p).reshape(-1, n) / n
    m = np.vstack([m_kernel, p.T / n])
    d = np.concatenate([dk.ravel(), (np.asarray(ba, np.float64) - bb).ravel()])
    last = {kname, bname}
    if not any(t.name_a in last for t in ctx.divergent("gradients")):
        return []  # the fused op's error shows first in the last layer's gradients
    u, *_ = np.linalg.lstsq(m, d, rcond=None)
    residual = float(np.linalg.norm(m @ u - d)) / max(float(np.linalg.norm(d)), 1e-30)
    if residual > 1e-3 or float(np.max(np.abs(u))) < 1e-3:
        return []
    logp_label = np.log(np.maximum((p * y).sum(axis=1), 1e-45))
    loss = ctx.a.loss
    options = {"A": 1.0 - u, "B": 1.0 + u}
    fused, s = min(options.items(), key=lambda kv: abs(-np.mean(kv[1] * logp_label) - loss))
    loss_s = float(-np.mean(s * logp_label))
    if not _same(loss_s, loss) and abs(loss_s - loss) > 1e-4 * max(abs(loss), 1.0):
        return []  # the label sums must also reproduce the loss
    labels = y.argmax(axis=1)
    per_class = {int(k): float(np.median(s[labels == k])) for k in np.unique(labels)}
    unusual = {k: v for k, v in per_class.items() if abs(v - 1.0) > 1e-3}
    ev = (f"losses agree ({fmt(ctx.a.loss)} / {fmt(ctx.b.loss)}); gradients of {kname} and {bname} differ",
          f"the difference is softmax * (sum(labels) - 1) / N with per-sample label sums s: relative residual "
          f"{residual:.1e} over {d.size} gradient elements (N = {n})",
          f"side {fused} is the fused op (its gradient assumes sum(labels) = 1); label row sums by class: "
          + ", ".join(f"{k}: {v:.4g}" for k, v in per_class.items()),
          f"-mean(s * log p[label]) = {fmt(loss_s)} reproduces the loss {fmt(loss)}")
    return [Finding(
        "fused-softmax-xent", f"Fused softmax cross-entropy on side {fused} with label rows that do not sum to 1",
        ev,
        "Keep label rows summing to 1 and weight samples with sample_weight (or scale the per-sample loss); "
        "tf.nn.softmax_cross_entropy_with_logits' gradient is p - t, right only when sum(t) = 1.",
        numbers={"fused_side": fused, "residual": residual, "label_sums_by_class": per_class,
                 "classes_not_summing_to_1": list(unusual)})]


def probabilities_as_logits(ctx: Context) -> list[Finding]:
    """Cause 13: one side's loss is the cross-entropy of its *output* taken as logits (the
    softmax or sigmoid applied twice), and the other side's loss is not.

    Its output ``p`` is the last captured activation (rows summing to 1, or one sigmoid
    column); the side's loss matching ``mean(CE_from_logits(y, p))`` to 2e-5 says the loss
    received probabilities where it expects logits. Keras on TensorFlow hides this mistake
    (``from_logits=True`` on a softmax output takes the logits cached on it and warns,
    keras/src/backend/tensorflow/nn.py:1262-1295, Keras 3.15); optax and hand-written losses
    do not."""
    start = _outputs(ctx)
    if start is None:
        return []
    y, outs, kind = start.y, start.outs, start.kind
    from_logits = binary_from_logits if kind == "binary" else categorical_from_logits
    twice = {label: float(np.mean(from_logits(y, p))) for label, p in outs.items()}
    # a side whose network ends in logits gives its loss logits: it cannot be the one
    hits = [s for s in ctx.sides if s.label not in start.logits and _same(twice[s.label], s.loss)]
    if len(hits) != 1:
        return []
    side = hits[0]
    other = ctx.b if side is ctx.a else ctx.a
    link = "sigmoid" if kind == "binary" else "softmax"
    ev = (f"side {side.label}'s loss {fmt(side.loss)} = the cross-entropy of its output taken as logits "
          f"(recomputed {fmt(twice[side.label])}): a {link} applied twice",
          (f"side {other.label}'s network ends in logits; its loss {fmt(other.loss)}" if other.label in start.logits
           else f"side {other.label}'s loss {fmt(other.loss)}; the same formula on its output gives "
                f"{fmt(twice[other.label])}"),
          f"side {side.label}'s output is {'probabilities in [0, 1]' if kind == 'binary' else 'rows summing to 1'}: "
          f"the {link} is already applied") + ((start.note,) if start.note else ())
    return [Finding("probabilities-as-logits", f"Side {side.label} passes probabilities to a loss that expects logits",
                    ev, f"Give side {side.label}'s loss the logits (the network without its final {link}), or use "
                        "a loss on probabilities.",
                    numbers={"side": side.label, "loss_recomputed": twice[side.label]})]


def _log_plus(p: np.ndarray, y: np.ndarray, kind: str, eps: float) -> float:
    """``-mean(y log(p + eps))`` (binary: ``+ (1 - y) log(1 - p + eps)``), a hand-written loss."""
    with np.errstate(divide="ignore"):
        if kind == "binary":
            return float(np.mean(-(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))))
        return float(np.mean(-np.sum(y * np.log(p + eps), axis=1)))


def log_plus_epsilon(ctx: Context) -> list[Finding]:
    """A hand-written cross-entropy ``-sum(y log(p + eps))`` on one side (binary: also
    ``log(1 - p + eps)``): its loss matches that formula for one epsilon, and neither the
    logits formula nor a clipped one. Only where the formulas differ on this batch
    (saturated predictions: away from 0 and 1, ``log(p + eps)`` is ``log p`` to ``eps/p``)."""
    start = _outputs(ctx)
    if start is None:
        return []
    y, outs, kind = start.y, start.outs, start.kind
    for side, other in ((ctx.a, ctx.b), (ctx.b, ctx.a)):
        p = outs[side.label].astype(np.float32).astype(np.float64)  # as the framework holds it
        found = start.find_logits(side.label, ctx.x)
        models = _models(outs[side.label], found[0] if found else None, y, kind)
        if any(_same(v[0], side.loss) for v in models.values()):
            continue  # a library formula explains this side's loss
        for eps in _EPS:
            value = _log_plus(p, y, kind, eps)
            if not _same(value, side.loss):
                continue
            ev = (f"side {side.label}'s loss {fmt(side.loss)} = -mean(y·log(p + {eps:g})) recomputed from its output "
                  f"({fmt(value)}); no library formula (logits, clipped probabilities) gives it",
                  f"side {other.label}'s loss {fmt(other.loss)}",
                  f"{int(np.count_nonzero(p < eps))} of {p.size} predictions are below {eps:g}, where log(p + "
                  f"{eps:g}) departs from log p") + ((start.note,) if start.note else ())
            return [Finding("log-plus-epsilon", f"Side {side.label} computes the cross-entropy by hand as "
                            f"log(p + {eps:g})", ev,
                            f"Compute side {side.label}'s loss from the logits (optax.softmax_cross_entropy / "
                            "sigmoid_binary_cross_entropy, or Keras from_logits=True): adding an epsilon inside the "
                            "log changes the loss and its gradient wherever predictions saturate.",
                            numbers={"side": side.label, "epsilon": eps, "loss_recomputed": value})]
    return []
