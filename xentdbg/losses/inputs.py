"""What ``xentdbg loss`` evaluates: the loss name, ``y_true`` and ``y_pred``, validated.

``--y-true`` / ``--y-pred`` each take one of

- inline JSON: ``'[[0,1],[1,0]]'`` (numbers only; ``NaN``/``Infinity`` are accepted),
- ``FILE.npy``, ``FILE.npz`` (a single array, or the array named like the option,
  ``y_true``/``y_pred``) or ``FILE.npz:KEY``; read with ``allow_pickle=False``,
- a preset name (:data:`PRESETS`), which supplies both arrays for the chosen loss.

The libraries receive ``y_pred`` as float32 (Keras' ``floatx``); ``y_true`` as float32,
or int32 class indices for the sparse loss. The float64 reference sees the same float32
values, so every difference it shows comes from the formula, not from the input.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from xentdbg.data.npy import ArrayFileError, npz_keys, read_npy, read_npz
from xentdbg.errors import UsageError
from xentdbg.paths import describe_not_file

BCE, CCE, SCCE = "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"
LOSSES = (BCE, CCE, SCCE)
_ALIASES = {"bce": BCE, "cce": CCE, "scce": SCCE,
            "binarycrossentropy": BCE, "categoricalcrossentropy": CCE, "sparsecategoricalcrossentropy": SCCE}

PRESETS = {
    "saturated": "probabilities exactly 0 and 1, one right and one wrong sample (case 4); logits +-50",
    "confident": "probabilities 0.001 / 0.999 (nothing clipped), one right and one wrong sample",
    "random": "4 samples, 3 classes (1 output for binary), logits ~ N(0, 3^2), numpy default_rng(0)",
    "weighted": "categorical only: one-hot labels times class weights [1, 1, 0.1] (rows do not sum to 1)",
}

MAX_BYTES = 1 << 28
"""The largest array read from a file: 256 MiB (each implementation gets its own copy)."""
MAX_DEPTH = 32
"""The deepest nesting of inline JSON: numpy arrays have at most 64 axes, a loss needs a few."""


@dataclass(frozen=True)
class LossInputs:
    """Validated arrays as the libraries receive them, plus what the user should know about them."""

    loss: str
    from_logits: bool
    y_true: np.ndarray  # float32, or int32 class indices for the sparse loss
    y_pred: np.ndarray  # float32
    notes: tuple[str, ...] = ()


def canonical_loss(name: str) -> str:
    """``categorical_crossentropy``, ``CategoricalCrossentropy`` or ``cce`` -> ``categorical_crossentropy``."""
    key = name.strip().lower()
    if key in LOSSES:
        return key
    found = _ALIASES.get(key.replace("_", "").replace("-", ""))
    if found is None:
        raise UsageError(f"unknown loss {name!r}.",
                         hint=f"Choose one of {', '.join(LOSSES)} (or bce, cce, scce).")
    return found


def read_inputs(loss: str, y_true: str | None, y_pred: str | None, from_logits: bool) -> LossInputs:
    """Parse the two command-line values (JSON, file or preset) and validate them for ``loss``."""
    if y_pred is None and y_true is None:
        raise UsageError("give --y-pred and --y-true.",
                         hint="Inline JSON, an .npy/.npz file or a preset, e.g. "
                              "--y-true '[[0,1],[1,0]]' --y-pred '[[0,1],[0,1]]', or --y-pred saturated.")
    # A preset given for one side supplies the other side when it is omitted.
    sole = y_pred if y_true is None else y_true if y_pred is None else None
    if sole is not None and sole.strip() not in PRESETS:
        _read_one(sole, "y_pred" if y_true is None else "y_true", loss, from_logits)  # its own error first
        missing = "--y-true" if y_true is None else "--y-pred"
        raise UsageError(f"{missing} is missing.", hint=f"Only a preset ({', '.join(PRESETS)}) supplies both arrays.")
    t_text = y_true if y_true is not None else sole
    p_text = y_pred if y_pred is not None else sole
    assert t_text is not None and p_text is not None  # at least one was given; a missing one is the preset
    t = _read_one(t_text, "y_true", loss, from_logits)
    p = _read_one(p_text, "y_pred", loss, from_logits)
    return prepare(loss, t, p, from_logits)


def prepare(loss: str, y_true, y_pred, from_logits: bool) -> LossInputs:
    """Validate shapes and values for ``loss`` and cast to the dtypes the libraries get."""
    loss = canonical_loss(loss)
    t = _numeric(y_true, "y_true")
    p = _numeric(y_pred, "y_pred")
    if p.ndim == 0:
        raise UsageError(f"y_pred is a scalar; {loss} needs at least one axis (the last one holds the classes).",
                         hint="Wrap it in brackets, e.g. [[0.3, 0.7]] for one sample of two classes.")
    if loss == SCCE:
        t_out = _class_indices(t, p.shape)
    else:
        if t.shape != p.shape:
            hint = "For integer class labels use sparse_categorical_crossentropy." if loss == CCE else None
            raise UsageError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; {loss} needs equal "
                             "shapes.", hint=hint)
        t_out = t.astype(np.float32)
    p32 = p.astype(np.float32)
    notes = list(_rounding_notes(p, p32))
    if not from_logits and np.any(np.isfinite(p32) & ((p32 < 0) | (p32 > 1))):
        notes.append("y_pred has values outside [0, 1], so they are not probabilities: pass --from-logits "
                     "if they are logits.")
    if from_logits and loss != BCE and np.all((p32 >= 0) & (p32 <= 1)) \
            and np.allclose(p32.astype(np.float64).sum(-1), 1.0, atol=1e-5):
        notes.append("y_pred rows lie in [0, 1] and sum to 1, like probabilities: drop --from-logits if they are.")
    if not np.all(np.isfinite(p32)):
        notes.append(f"y_pred holds {int(np.count_nonzero(~np.isfinite(p32)))} nan or inf value(s).")
    return LossInputs(loss, from_logits, t_out, p32, tuple(notes))


def preset(name: str, loss: str, from_logits: bool) -> tuple[np.ndarray, np.ndarray]:
    """The preset's ``(y_true, y_pred)`` for ``loss``; ``y_pred`` holds logits when ``from_logits``."""
    if name == "weighted" and loss != CCE:
        raise UsageError("preset 'weighted' is for categorical_crossentropy only "
                         "(its labels are weighted one-hot rows).")
    if name == "random":
        rng = np.random.default_rng(0)
        classes = 1 if loss == BCE else 3
        z = rng.normal(0.0, 3.0, size=(4, classes))
        labels = rng.integers(0, 2 if loss == BCE else classes, size=4)
        p = 1 / (1 + np.exp(-z)) if loss == BCE else np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        t = labels[:, None].astype(np.float64) if loss == BCE else np.eye(classes)[labels]
        return _sparse(loss, t), (z if from_logits else p)
    if name == "weighted":
        z = np.random.default_rng(0).normal(0.0, 3.0, size=(4, 3))
        t = np.eye(3)[[0, 1, 2, 2]] * np.array([1.0, 1.0, 0.1])
        return t, (z if from_logits else np.exp(z) / np.exp(z).sum(-1, keepdims=True))
    high = {"saturated": 1.0, "confident": 0.999}[name]
    if loss == BCE:
        t, p = np.array([[1.0], [0.0]]), np.array([[high], [high]])
        z = np.array([[50.0], [50.0]]) if name == "saturated" else np.log(p / (1 - p))
    else:
        t, p = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[1 - high, high], [1 - high, high]])
        z = np.array([[-50.0, 50.0], [-50.0, 50.0]]) if name == "saturated" else np.log(p)
    return _sparse(loss, t), (z if from_logits else p)


def _sparse(loss: str, t: np.ndarray) -> np.ndarray:
    return t.argmax(-1) if loss == SCCE else t


def _read_one(text: str, role: str, loss: str, from_logits: bool) -> np.ndarray:
    text = text.strip()
    if text in PRESETS:
        return preset(text, loss, from_logits)[0 if role == "y_true" else 1]
    path, key = _file_ref(text)
    if path is not None:
        return _load_file(path, key, role)
    depth = _nesting(text)
    if depth > MAX_DEPTH:
        raise UsageError(f"--{role.replace('_', '-')}: JSON nested {depth} levels deep; at most {MAX_DEPTH} are read.",
                         hint="Write a nested list of numbers with one level per axis, e.g. '[[0, 1], [1, 0]]'.")
    try:
        value = json.loads(text, parse_int=_integer)
    except RecursionError:  # not expected after _nesting; never a traceback
        raise UsageError(f"--{role.replace('_', '-')}: JSON nested too deeply.",
                         hint="Write a nested list of numbers, e.g. '[[0, 1], [1, 0]]'.") from None
    except json.JSONDecodeError as e:
        if text.replace("_", "").replace("-", "").isalnum() and not text[:1].isdigit():
            raise UsageError(f"--{role.replace('_', '-')} {text!r} is neither a preset nor a file.",
                             hint=f"Presets: {', '.join(PRESETS)}; files: .npy, .npz or .npz:KEY.") from None
        raise UsageError(f"--{role.replace('_', '-')} is not valid JSON: {e.msg} at column {e.colno}.",
                         hint="Write a nested list of numbers, e.g. '[[0, 1], [1, 0]]' (quote it for the shell).") \
            from None
    return _numeric(value, role, source="JSON")


def _integer(digits: str) -> int | float:
    """A JSON integer: an int within int64's range, else the float it rounds to (``inf``
    past 1e308). Python refuses to convert more than 4300 digits to an int, and numpy
    turns ints past int64 into object arrays."""
    return int(digits) if len(digits.lstrip("-")) <= 18 else float(digits)


def _nesting(text: str) -> int:
    """The deepest ``[`` nesting of JSON ``text`` (brackets inside strings not counted),
    counted without recursion: :func:`json.loads` recurses once per level."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _file_ref(text: str) -> tuple[str | None, str | None]:
    """``a.npz:key`` -> ("a.npz", "key"); ``a.npy`` -> ("a.npy", None); not a file -> (None, None)."""
    head, sep, key = text.rpartition(":")
    if sep and head.endswith(".npz") and key:
        return head, key
    if text.endswith((".npy", ".npz")):
        return text, None
    if os.path.isfile(text):
        raise UsageError(f"{text}: only .npy and .npz files are read.",
                         hint="Save the array with numpy.save or numpy.savez, or pass it as inline JSON.")
    return None, None


def _load_file(path: str, key: str | None, role: str) -> np.ndarray:
    flag = f"--{role.replace('_', '-')}"
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise UsageError(f"{path}: {describe_not_file(path)}.", hint=f"Check the path given to {flag}.")
    if path.endswith(".npy") and key is not None:
        raise UsageError(f"{path}:{key}: only .npz files hold named arrays.")
    try:
        if not zipfile.is_zipfile(path):  # a .npy file (whatever its name says)
            return _numeric(read_npy(path, MAX_BYTES), role, source=path)
        names = npz_keys(path)
        chosen = key or (names[0] if len(names) == 1 else role if role in names else None)
        if chosen is None or chosen not in names:
            what = f"has no array {chosen!r}" if chosen else f"holds {len(names)} arrays"
            raise UsageError(f"{path} {what}: {', '.join(names) or 'none'}.", hint=f"Name one: {flag} {path}:KEY.")
        return _numeric(read_npz(path, [chosen], MAX_BYTES)[0], role, source=f"{path}:{chosen}")
    except UsageError:
        raise
    except ArrayFileError as e:
        raise UsageError(f"{path}: {e}.", hint=f"Save plain numeric arrays of at most {MAX_BYTES >> 20} MiB "
                                               "with numpy.save or numpy.savez; xentdbg never unpickles.") from None
    except MemoryError:
        raise UsageError(f"{path}: the array does not fit in memory.") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: not a readable .npy/.npz file ({e}).") from None


def _numeric(value, role: str, source: str = "input") -> np.ndarray:
    """A numeric array or a UsageError saying what is wrong with ``value``."""
    try:
        arr = np.asarray(value)
    except ValueError:
        raise UsageError(f"{role} ({source}) is ragged: its rows have different lengths.",
                         hint="Every row must have the same number of entries.") from None
    if arr.dtype.kind not in "biuf":
        what = {"O": "is ragged, or mixes numbers with null or other values", "U": "holds text", "S": "holds bytes",
                "c": "holds complex numbers"}.get(arr.dtype.kind, f"has dtype {arr.dtype}")
        raise UsageError(f"{role} ({source}) {what}; it must hold real numbers only.",
                         hint="Write plain numbers, e.g. [[0, 1], [1, 0]]; no strings, null or nested objects.")
    if arr.size == 0:
        raise UsageError(f"{role} ({source}) is empty.")
    return arr


def _class_indices(t: np.ndarray, pred_shape: tuple) -> np.ndarray:
    """Sparse labels: integer classes with shape ``pred_shape[:-1]`` (or that plus a trailing 1)."""
    if t.shape not in (pred_shape[:-1], pred_shape[:-1] + (1,)):
        raise UsageError(f"y_true has shape {t.shape} but y_pred has shape {pred_shape}; "
                         f"sparse_categorical_crossentropy needs y_true of shape {pred_shape[:-1]} (class indices).",
                         hint="For one-hot labels use categorical_crossentropy.")
    if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
        raise UsageError("y_true must hold integer class indices for sparse_categorical_crossentropy.")
    classes = pred_shape[-1]
    if np.any((t < 0) | (t >= classes)):
        raise UsageError(f"y_true has class indices outside 0..{classes - 1} (y_pred has {classes} classes).")
    return t.astype(np.int32)


def _rounding_notes(p: np.ndarray, p32: np.ndarray) -> list[str]:
    """Values whose float32 rounding matters for a cross-entropy: to 0, to 1, to inf."""
    if p.dtype == np.float32 or p.dtype.kind != "f":
        return []
    p64 = p.astype(np.float64)
    wide = p32.astype(np.float64)
    changed = np.isfinite(p64) & (
        ((p64 != 0) & (wide == 0)) | ((p64 != 1) & (wide == 1)) | np.isinf(wide))
    if not changed.any():
        return []
    where = [f"y_pred[{', '.join(str(int(k)) for k in i)}] = {float(p64[i])!r} -> {float(p32[i])!r}"
             for i in zip(*np.nonzero(changed), strict=True)][:4]
    more = int(changed.sum()) - len(where)
    return [f"float32 rounding changed {int(changed.sum())} value(s) of y_pred: {'; '.join(where)}"
            + (f" (and {more} more)" if more > 0 else "")
            + ". Every implementation, the reference included, sees the float32 values."]
