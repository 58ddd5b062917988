"""Where and why the implementations of a cross-entropy differ: which findings fit the measured results.

Each library's formula is modelled in :mod:`xentdbg.losses.models` (citing the lines it
follows) and checked against what the library actually returned; a finding says
``verified`` only when the model reproduces the measured per-sample losses and gradient.
The numbers in a finding's text are the library's own outputs, or float32 arithmetic on
the inputs done here and labelled so. Pure functions on measured results.
"""

from __future__ import annotations

import numpy as np

from xentdbg.findings import Finding
from xentdbg.losses.formatting import bound, cap, element, f32, f64, g, names, sample, vec
from xentdbg.losses.implementations import ImplResult
from xentdbg.losses.inputs import BCE, CCE, SCCE, LossInputs
from xentdbg.losses.models import CLIP_SOURCE, EPSILON, FUSED_SOURCE, HIGH, LOW, library_model, onehot, sigmoid, softmax

RTOL, ATOL = 1e-5, 1e-7  # two float32 computations of the same formula agree to a few ulp
_LOSS_CAUSES = {"clip", "reference_nan", "renormalize", "log_epsilon", "sparse_order"}  # change the loss value
LIBRARIES = ("keras-tf", "keras-jax", "tf-keras", "optax")
# Finding.cause here: clip, reference_nan, renormalize, gradient_shift, log_epsilon, sparse_order,
# logits_path, attached_logits, fused_gradient, float32, unverified, unexplained.


def close(a: np.ndarray | float, b: np.ndarray | float, rtol: float = RTOL, atol: float = ATOL) -> np.ndarray:
    """Element-wise: equal non-finite values, or ``|a-b| <= atol + rtol * max(|a|, |b|)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(a) & np.isfinite(b)
        near = np.abs(a - b) <= atol + rtol * np.maximum(np.abs(a), np.abs(b))
    same_special = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    return np.where(finite, near, same_special)


def identical_groups(results: list[ImplResult]) -> list[tuple[str, ...]]:
    """Implementations whose loss, per-sample losses and gradient are equal value for value (NaN = NaN)."""
    groups: list[list[ImplResult]] = []
    for r in (r for r in results if r.ok):
        for group in groups:
            if _same(group[0], r):
                group.append(r)
                break
        else:
            groups.append([r])
    return [tuple(r.key for r in group) for group in groups if len(group) > 1]


def _same(a: ImplResult, b: ImplResult) -> bool:
    (per_a, grad_a), (per_b, grad_b) = _arrays(a), _arrays(b)
    return (np.array_equal(np.float64(a.reduced), np.float64(b.reduced), equal_nan=True)
            and np.array_equal(per_a.astype(np.float64), per_b.astype(np.float64), equal_nan=True)
            and np.array_equal(grad_a.astype(np.float64), grad_b.astype(np.float64), equal_nan=True))


def reproduces(key: str, inputs: LossInputs, result: ImplResult) -> tuple[bool, bool]:
    """Whether the model of ``key``'s source (:func:`~xentdbg.losses.models.library_model`) matches the
    measured (per-sample losses, gradient) of ``result``."""
    m = library_model(key, inputs)
    per, grad = _arrays(result)
    return bool(close(m.per_sample, per).all()), bool(close(m.gradient, grad, atol=1e-6).all())


# --- findings ------------------------------------------------------------------------------------


def explain(inputs: LossInputs, results: list[ImplResult]) -> tuple[Finding, ...]:
    """Every cause that accounts for a difference between the implementations and the reference."""
    with np.errstate(all="ignore"):
        return tuple(_explain(inputs, results))


def _explain(inputs: LossInputs, results: list[ImplResult]) -> list[Finding]:
    ok = {r.key: r for r in results if r.ok}
    libs = [k for k in LIBRARIES if k in ok]
    checks = {k: reproduces(k, inputs, ok[k]) for k in libs}
    out: list[Finding] = []
    if inputs.from_logits:
        out += _logits_findings(inputs, ok, libs, checks)
    else:
        out += _probability_findings(inputs, ok, libs, checks)
    for k in libs:
        if not all(checks[k]):
            parts = zip(("per-sample losses", "gradient"), checks[k], strict=True)
            what = " and ".join(n for n, good in parts if not good)
            out.append(Finding("unverified", f"{ok[k].label}: its {what} do not match xentdbg's model of its source",
                               (f"model: {library_model(k, inputs).description}",
                                "The library may have changed since Keras 3.15.1 / tf_keras 2.21.0; the causes above "
                                "may not apply to it."),
                               implementations=(k,), verified=False))
    if "reference" in ok:
        out += _residual_findings(inputs, ok, libs, out)
    return out


def _probability_findings(inputs, ok, libs, checks) -> list[Finding]:
    keras = [k for k in libs if k != "optax"]
    out = []
    if keras:
        clip = _clip_finding(inputs, ok, keras, checks)
        if clip:
            out.append(clip)
    if "reference" in ok:
        bad = _reference_nonfinite(inputs, ok["reference"])
        if bad:
            out.append(bad)
    if keras and inputs.loss in (CCE, SCCE):
        out += _renormalize_findings(inputs, ok, keras, checks)
    if inputs.loss == BCE and "tf-keras" in ok:
        eps = _log_epsilon_finding(inputs, ok, checks)
        if eps:
            out.append(eps)
    if inputs.loss == SCCE and "keras-jax" in ok and ({"keras-tf", "tf-keras"} & set(ok)):
        order = _sparse_order_finding(inputs, ok, checks)
        if order:
            out.append(order)
    return out


def _clip_finding(inputs, ok, keras, checks) -> Finding | None:
    t = _dense_labels(inputs)
    p = inputs.y_pred
    q = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    # What gets clipped: p / Σp for the categorical loss and sparse on JAX, p itself otherwise.
    operand = {k: q if inputs.loss == CCE or (inputs.loss == SCCE and k == "keras-jax") else p for k in keras}
    masks = {k: np.isfinite(operand[k]) & ((operand[k] < LOW) | (operand[k] > HIGH)) for k in keras}
    clipped = np.logical_or.reduce([masks[k] for k in keras])
    if not clipped.any():
        return None
    lines = [f"eps = keras.config.epsilon() = {EPSILON:g}; as float32 the bounds are {bound(LOW)} and {bound(HIGH)}"
             + (", applied to p / Σp" if inputs.loss == CCE else "") + "; each term below is float64 math "
             "rounded to float32"]
    terms = []
    for idx in zip(*np.nonzero(clipped), strict=True):
        here = [k for k in keras if masks[k][idx]]
        x = operand[here[0]][idx]
        c = np.float64(LOW if x < LOW else HIGH)
        w = float(t[idx])
        if inputs.loss == BCE:
            term = -(w * np.log(c) + (1 - w) * np.log1p(-c))
            text = f"−({g(w)}·log({bound(c)}) + {g(1 - w)}·log(1 − {bound(c)})) = {f32(term)}"
            text += _library_ulp(idx, term, p.shape[-1] == 1, ok[keras[0]])
        elif w == 0:
            text = "not the label: no term of its own" if inputs.loss == SCCE else "y_true 0: adds 0"
        elif inputs.loss == SCCE:  # TensorFlow normalizes after clipping: its term is not −log(c) alone
            text = f"−log({bound(c)}) = {f32(-np.log(c))}"
        else:
            text = f"−{'' if w == 1 else g(w) + '·'}log({bound(c)}) = {f32(-w * np.log(c))}"
            text += _library_ulp(idx, -w * np.log(c), np.count_nonzero(t[idx[:-1]]) == 1, ok[keras[0]])
        shown = g(p[idx]) + (f" (p/Σp = {float(x):.8g})" if operand[here[0]] is q and x != p[idx] else "")
        only = f" [{names(ok, here)} only]" if len(here) < len(keras) else ""
        terms.append(f"{element(idx)} = {shown} → {bound(c)}: {text}{only}")
    lines += cap(terms)
    samples = sorted({_flat(i, p.shape) for i in zip(*np.nonzero(clipped), strict=True)})
    verified = [k for k in keras if checks[k][0]]
    first = ok[verified[0] if verified else keras[0]]
    by_model: dict[str, list[str]] = {}
    for k in verified:
        by_model.setdefault(library_model(k, inputs).description, []).append(k)
    for description, keys in by_model.items():
        lines.append(f"{names(ok, keys)}: per sample {vec(ok[keys[0]].per_sample)}, reproduced by {description}")
    if verified:
        same_model = by_model[library_model(first.key, inputs).description]
        lines.append(f"loss = mean of the {first.per_sample.size} per-sample losses = {first.reduced!r}"
                     + (f" ({names(ok, same_model)})" if len(by_model) > 1 else ""))
    ref_grad = ok["reference"].gradient if "reference" in ok else None
    zero = [k for k in keras if np.any(clipped & (ok[k].gradient == 0)
                                      & (True if ref_grad is None else ~close(ref_grad, 0.0)))]
    if zero:
        cells = clipped & (ok[zero[0]].gradient == 0)
        where = "every element" if cells.all() else \
            ", ".join(element(i) for i in list(zip(*np.nonzero(cells), strict=True))[:6])
        lines.append(f"{names(ok, zero)}: gradient exactly 0 at {where}: a clipped element passes no gradient, "
                     "so a saturated prediction gets no learning signal"
                     + (f" (reference: {vec(ref_grad)})" if ref_grad is not None else ""))
    return Finding("clip", "Keras clips y_pred to [1e-07, 1 − 1e-07] before the log", tuple(lines),
                   implementations=tuple(keras), samples=tuple(samples), verified=len(verified) == len(keras),
                   source=CLIP_SOURCE[inputs.loss])


def _library_ulp(idx, term: float, alone: bool, lib: ImplResult) -> str:
    """When ``idx`` is its sample's only term (``alone``) and the library's float32 result is not
    ``term`` correctly rounded, say what the library returned: its float32 log is not correctly rounded."""
    row = idx[:-1]
    per = _arrays(lib)[0]
    if not alone or per.ndim != len(row) or lib.key == "tf-keras":  # tf_keras' BCE term differs
        return ""
    measured = np.float32(per[row])
    if measured == np.float32(term):
        return ""
    ulps = abs(int(np.float32(term).view(np.int32)) - int(measured.view(np.int32)))
    return f" ({lib.label} returns {f32(measured)}, {ulps} ulp from the correctly rounded value)"


def _reference_nonfinite(inputs, ref: ImplResult) -> Finding | None:
    per = _arrays(ref)[0]
    bad = ~np.isfinite(per)
    if not bad.any():
        return None
    t = _dense_labels(inputs)
    p = inputs.y_pred.astype(np.float64)
    if inputs.loss == SCCE:
        cells = [(i, f"label {int(np.argmax(t[i[:-1]]))}, y_pred {g(p[i])}: −log({g(p[i])}) = {f64(-np.log(p[i]))}")
                 for i in zip(*np.nonzero((t > 0) & ~(p > 0)), strict=True)]
    else:
        cells = []
        terms = [(t, p, "")] + ([(1 - t, 1 - p, "1 − ")] if inputs.loss == BCE else [])
        for weight, arg, minus in terms:
            for i in zip(*np.nonzero(~(arg > 0)), strict=True):
                w, a = float(weight[i]), float(arg[i])
                value = "0 × (−inf) = nan in IEEE arithmetic (the limit is 0)" if w == 0 and a == 0 else \
                    f64(-w * np.log(a))
                cells.append((i, f"{minus}y_true = {g(w)}, {minus}y_pred = {g(a)}: −{g(w)}·log({g(a)}) = {value}"))
    lines = cap([f"{element(i)}: {text}" for i, text in cells])
    lines.append(f"reference per sample {vec(per)}, loss {ref.reduced!r}"
                 + (": one nan makes the mean nan" if ref.reduced is not None and np.isnan(ref.reduced) else ""))
    zero = any("log(0)" in text for _, text in cells)
    title = "The float64 reference takes log(0): it does not clip" if zero else \
        "The float64 reference is not finite: y_pred holds nan or inf"
    return Finding("reference_nan", title, tuple(lines), implementations=("reference",),
                   samples=tuple(int(i) for i in np.flatnonzero(bad)))


def _renormalize_findings(inputs, ok, keras, checks) -> list[Finding]:
    out = []
    p = inputs.y_pred.astype(np.float64)
    sums = p.sum(-1)
    off = np.isfinite(sums) & (np.abs(sums - 1) > 1e-6)
    ref = ok.get("reference")
    if off.any():
        verified = [k for k in keras if checks[k][0]]
        t = np.asarray(inputs.y_true, dtype=np.float64)
        weight = t.sum(-1) if inputs.loss == CCE else np.ones_like(sums)
        lines = [f"sample {sample(i, sums.shape)}: Σ y_pred = {sums.flat[i]:.8g}, so the loss moves by "
                 f"Σt·log(Σp) = {weight.flat[i] * np.log(sums.flat[i]):.6g}"
                 + (f" ({ok[verified[0]].label} {f32(ok[verified[0]].per_sample.flat[i])}, reference "
                    f"{ref.per_sample.flat[i]:.8g})" if ref is not None and verified else "")
                 for i in np.flatnonzero(off)]
        source = {CCE: "keras/src/backend/tensorflow/nn.py:1372, keras/src/backend/jax/nn.py:983, "
                       "tf_keras/src/backend.py:5589",
                  SCCE: "keras/src/backend/tensorflow/nn.py:1438 (log-softmax of log p), "
                        "keras/src/backend/jax/nn.py:1010"}[inputs.loss]
        out.append(Finding("renormalize", "Keras divides each y_pred row by its sum; the reference does not",
                           tuple(cap(lines)), implementations=tuple(keras),
                           samples=tuple(int(i) for i in np.flatnonzero(off)), verified=bool(verified), source=source))
    if ref is not None:
        shift = _gradient_shift(inputs, ok, keras, ref)
        if shift:
            out.append(shift)
    return out


def _gradient_shift(inputs, ok, keras, ref) -> Finding | None:
    """Keras differentiates through its normalization by Σp: a constant per row on top of -t/(N p)."""
    p = inputs.y_pred
    usable = np.all((p >= LOW) & (p <= HIGH), axis=-1) & np.all(np.isfinite(ref.gradient), axis=-1)
    shifted, rows, diff = [], np.zeros(0, dtype=int), None
    for k in keras:
        d = ok[k].gradient.astype(np.float64) - ref.gradient
        size = np.abs(d).max(-1)
        moved = usable & (d.max(-1) - d.min(-1) <= 1e-6 + 1e-4 * size) & (size > 1e-6)
        if moved.any():
            shifted.append(k)
            if diff is None:
                rows, diff = np.flatnonzero(moved), d.reshape(-1, d.shape[-1])
    if not shifted or diff is None:
        return None
    how = "p/Σp" if inputs.loss == CCE else "the normalization of p (log-softmax on TensorFlow, p/Σp on JAX)"
    lines = [f"{names(ok, shifted)} minus the reference, the same in every class of a row: "
             + ", ".join(f"sample {sample(i, p.shape[:-1])}: {diff[i].mean():.6g}" for i in rows[:6]),
             f"Keras differentiates through {how}, which subtracts Σ_c g_c·p_c/Σp from every class of the textbook "
             "gradient g. A softmax before the loss removes a per-row constant (the columns of its Jacobian sum to 0), "
             "so the gradients w.r.t. the logits agree."]
    return Finding("gradient_shift", "Gradients w.r.t. y_pred differ from the textbook one by a constant per row",
                   tuple(lines), implementations=tuple(shifted), samples=tuple(int(i) for i in rows),
                   source=CLIP_SOURCE[inputs.loss])


def _log_epsilon_finding(inputs, ok, checks) -> Finding | None:
    tfk = ok["tf-keras"]
    others = [k for k in ("keras-tf", "keras-jax") if k in ok]
    base = ok[others[0]].per_sample if others else library_model("keras-tf", inputs).per_sample
    base_name = ok[others[0]].label if others else "Keras 3 (modelled)"
    differ = ~close(tfk.per_sample, base, rtol=5e-7, atol=0.0)  # more than a few float32 ulp
    if not differ.any():
        return None
    lines = [f"sample {sample(i, base.shape)}: tf_keras {f32(tfk.per_sample.flat[i])}, {base_name} {f32(base.flat[i])}"
             for i in np.flatnonzero(differ)]
    lines = cap(lines)
    lines.append("tf_keras computes log(p + 1e-07) and log(1 − p + 1e-07) after clipping, which lowers each term "
                 "by about 1e-07/p")
    if np.any(inputs.y_pred >= HIGH):
        one_minus = np.float64(1) - np.float64(HIGH)
        lines.append(f"at the bound 0.99999988: −log({bound(one_minus)} + 1e-07) = {f32(-np.log(one_minus + LOW))} "
                     f"instead of −log({bound(one_minus)}) = {f32(-np.log(one_minus))}")
    return Finding("log_epsilon", "tf_keras adds 1e-07 inside the log of binary cross-entropy; Keras 3 does not",
                   tuple(lines), implementations=("tf-keras",), samples=tuple(int(i) for i in np.flatnonzero(differ)),
                   verified=checks["tf-keras"][0],
                   source="tf_keras/src/backend.py:5832-5833 vs keras/src/backend/tensorflow/nn.py:1487-1488")


def _sparse_order_finding(inputs, ok, checks) -> Finding | None:
    tf_key = "keras-tf" if "keras-tf" in ok else "tf-keras"
    a, b = ok[tf_key], ok["keras-jax"]
    differ = ~close(a.per_sample, b.per_sample)
    if not differ.any():
        return None
    lines = [f"sample {sample(i, a.per_sample.shape)}: {a.label} {f32(a.per_sample.flat[i])}, "
             f"{b.label} {f32(b.per_sample.flat[i])}" for i in np.flatnonzero(differ)]
    lines.append("TensorFlow clips p, takes log and normalizes inside sparse_softmax_cross_entropy_with_logits "
                 "(−log(c_y/Σc)); JAX divides by Σp first, then clips (−log clip(p_y/Σp)).")
    return Finding("sparse_order", "Sparse cross-entropy: TensorFlow clips then normalizes, JAX normalizes then clips",
                   tuple(cap(lines)), implementations=(tf_key, "keras-jax"),
                   samples=tuple(int(i) for i in np.flatnonzero(differ)),
                   verified=checks[tf_key][0] and checks["keras-jax"][0],
                   source="keras/src/backend/tensorflow/nn.py:1432-1440 vs keras/src/backend/jax/nn.py:1010-1014")


def _logits_findings(inputs, ok, libs, checks) -> list[Finding]:
    out = []
    exact = [k for k in libs if checks[k][0]]
    if exact:
        lines = [f"{names(ok, exact)} match the exact float64 formula per sample (within {RTOL:g} relative); "
                 "no clipping on this path.",
                 "Keras on TensorFlow and tf_keras call tf.nn.softmax_cross_entropy_with_logits / "
                 "sigmoid_cross_entropy_with_logits; Keras on JAX and optax use log_softmax / log_sigmoid."]
        big = ok[exact[0]].per_sample
        if np.nanmax(big) > -np.log(LOW):
            lines.append(f"largest per-sample loss {f32(np.nanmax(big))}: above −log(1e-07) = {f32(-np.log(LOW))}, "
                         "the most any sample can cost once probabilities are clipped")
        out.append(Finding("logits_path", "from_logits=True: every implementation works on the logits",
                           tuple(lines), implementations=tuple(exact),
                           source="keras/src/backend/tensorflow/nn.py:1364, keras/src/backend/jax/nn.py:981, "
                                  "tf_keras/src/backend.py:5581"))
    attached = _attached_logits_finding(inputs, ok)
    if attached:
        out.append(attached)
    if inputs.loss == CCE:
        fused = _fused_gradient_finding(inputs, ok, checks)
        if fused:
            out.append(fused)
    return out


def _attached_logits_finding(inputs, ok) -> Finding | None:
    rows = [k for k in ("keras-tf", "keras-jax", "tf-keras") if k in ok and ok[k].via_activation is not None]
    if not rows or all(close(ok[k].via_activation, ok[k].reduced) for k in rows):
        return None
    act = "sigmoid" if inputs.loss == BCE else "softmax"
    probs = (sigmoid if inputs.loss == BCE else softmax)(inputs.y_pred.astype(np.float64)).astype(np.float32)
    clipped = _as_probabilities(inputs, probs)
    clipped_loss = float(np.mean(library_model("keras-tf", clipped).per_sample))
    lines = []
    for k in rows:
        via = ok[k].via_activation
        if close(via, ok[k].reduced):
            how = "= its logits path: the loss found the logits attached to the activation's output (_keras_logits)"
        elif close(via, clipped_loss, rtol=1e-4):
            how = "= clipped probabilities: the loss does not look for attached logits"
        else:
            how = "matches neither the logits path nor the clipped model"
        lines.append(f"{ok[k].label}: {via!r} {how}")
    lines.append(f"(loss on the logits: {ok[rows[0]].reduced!r}; on the clipped probabilities, modelled here: "
                 f"{f32(clipped_loss)}). The same Keras model trains differently on the two backends once its "
                 "outputs saturate.")
    cache, jax_line = ("497-503", 1033) if inputs.loss == BCE else ("158-163", 983)
    return Finding("attached_logits", f"Through keras.activations.{act}(y_pred) and from_logits=False, Keras on "
                   "TensorFlow still uses the logits; Keras on JAX clips", tuple(lines), implementations=tuple(rows),
                   source=f"keras/src/activations/activations.py:{cache}, keras/src/backend/tensorflow/nn.py:1267, "
                          f"tf_keras/src/backend.py:5496; keras/src/backend/jax/nn.py:{jax_line} never looks")


def _fused_gradient_finding(inputs, ok, checks) -> Finding | None:
    sums = np.asarray(inputs.y_true, dtype=np.float64).sum(-1)
    off = np.abs(sums - 1) > 1e-6
    fused = [k for k in ("keras-tf", "tf-keras") if k in ok and checks[k][1]]
    if not off.any() or not fused:
        return None
    lines = [f"sample {sample(i, sums.shape)}: Σ y_true = {sums.flat[i]:.8g}" for i in np.flatnonzero(off)]
    lines = cap(lines)
    lines.append(f"{names(ok, fused)}: the gradient is softmax − y_true, the fused op's second output, which "
                 "assumes each y_true row sums to 1; the exact gradient is softmax·Σt − t. The loss values agree.")
    if "reference" in ok:
        diff = np.nanmax(np.abs(ok[fused[0]].gradient - ok["reference"].gradient))
        lines.append(f"max |gradient − reference| = {diff:.6g}")
    return Finding("fused_gradient", "TensorFlow's fused softmax cross-entropy gradient assumes label rows sum to 1",
                   tuple(lines), implementations=tuple(fused), samples=tuple(int(i) for i in np.flatnonzero(off)),
                   source=f"{FUSED_SOURCE} (gradient = op.outputs[1])")


def _residual_findings(inputs, ok, libs, found) -> list[Finding]:
    """Float32 rounding where nothing else applies, and any difference no finding accounts for."""
    ref = ok["reference"]
    rounding, unexplained = [], []
    for k in libs:
        covered = set()
        for f in found:
            if f.cause in _LOSS_CAUSES and (k in f.implementations or "reference" in f.implementations):
                covered.update(f.samples)
        if any(f.cause == "logits_path" and k in f.implementations for f in found):
            covered = set(range(ref.per_sample.size)) if close(ok[k].per_sample, ref.per_sample).all() else covered
        same = close(ok[k].per_sample, ref.per_sample).ravel()
        rest = [i for i in range(same.size) if i not in covered]
        both = [i for i in rest if np.isfinite(ref.per_sample.flat[i]) and np.isfinite(ok[k].per_sample.flat[i])]
        if both:
            a, b = ok[k].per_sample.ravel()[both].astype(np.float64), ref.per_sample.ravel()[both]
            rel = np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-30))
            rounding.append(f"{ok[k].label} {rel:.2g}")
        for i in rest:
            if not same[i]:
                unexplained.append(f"sample {sample(i, ref.per_sample.shape)}: {ok[k].label} "
                                   f"{f32(ok[k].per_sample.flat[i])}, reference {f64(ref.per_sample.flat[i])}")
    out = []
    if rounding:
        out.append(Finding("float32", "Elsewhere: float32 rounding",
                           ("max relative difference of the per-sample losses from the float64 reference, over the "
                            "samples no cause above applies to: " + ", ".join(rounding),), implementations=tuple(libs)))
    if unexplained:
        out.append(Finding("unexplained", "Differences no check above accounts for", tuple(cap(unexplained)),
                           implementations=tuple(libs), verified=False))
    return out


# --- helpers ------------------------------------------------------------------------------------------


def _arrays(r: ImplResult) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample losses and gradient of a result that is ``ok`` (they are set once it is)."""
    if r.per_sample is None or r.gradient is None:
        raise ValueError(f"{r.key} has no values: {r.status}")
    return r.per_sample, r.gradient


def _as_probabilities(inputs: LossInputs, y_pred: np.ndarray) -> LossInputs:
    return LossInputs(inputs.loss, False, inputs.y_true, y_pred)


def _flat(idx, shape) -> int:
    """Flat index of the sample an element ``idx`` of y_pred belongs to."""
    return int(np.ravel_multi_index(idx[:-1], shape[:-1])) if len(shape) > 1 else 0


def _dense_labels(inputs: LossInputs) -> np.ndarray:
    if inputs.loss == SCCE:
        return onehot(inputs.y_true.reshape(inputs.y_pred.shape[:-1]), inputs.y_pred.shape[-1])
    return np.asarray(inputs.y_true, dtype=np.float64)
