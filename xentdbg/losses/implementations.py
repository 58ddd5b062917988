"""Each implementation of a cross-entropy, as a user would call it, and the processes that run them.

Every library implementation returns, for ``y_true`` and float32 ``y_pred``:

- ``per_sample``: the library's unreduced loss function (``keras.losses.categorical_crossentropy``),
- ``reduced``: the loss object with its default reduction, ``sum_over_batch_size``:
  ``sum(per_sample) / per_sample.size`` (``reduce_values``, ``keras/src/losses/loss.py:148-159``, Keras 3.15.1),
- ``gradient``: ``d reduced / d y_pred`` (``tf.GradientTape`` or ``jax.grad``),

exactly as the library computed them (float32). Keras' backend is fixed per process
(``KERAS_BACKEND``), so Keras on TensorFlow, Keras on JAX, tf_keras and optax each run in
their own child process (:mod:`xentdbg.losses._child`), in parallel; arrays travel as
``.npz`` read with ``allow_pickle=False`` and metadata as JSON. The float64 reference
(:func:`xentdbg.losses.models.reference`) is plain numpy and runs here. Nothing at module
level imports TensorFlow or JAX.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xentdbg.losses.inputs import BCE, CCE, SCCE, LossInputs
from xentdbg.losses.models import reference

_CLASS = {BCE: "BinaryCrossentropy", CCE: "CategoricalCrossentropy", SCCE: "SparseCategoricalCrossentropy"}
_ACTIVATION = {BCE: "sigmoid", CCE: "softmax", SCCE: "softmax"}
_OPTAX = {BCE: "sigmoid_binary_cross_entropy", CCE: "softmax_cross_entropy",
          SCCE: "softmax_cross_entropy_with_integer_labels"}
DEFAULT_TIMEOUT = 300.0  # seconds per implementation: a cold `import tensorflow` alone takes ~7 s


@dataclass(frozen=True)
class Implementation:
    key: str
    label: str
    modules: tuple[str, ...]  # importable, or the row says "not installed"
    env: tuple[tuple[str, str], ...] = ()  # extra environment of its child process
    install: str = ""


IMPLEMENTATIONS = {i.key: i for i in (
    Implementation("keras-tf", "keras-tf", ("tensorflow", "keras"), (("KERAS_BACKEND", "tensorflow"),),
                   "pip install tensorflow"),
    Implementation("keras-jax", "keras-jax", ("jax", "keras"), (("KERAS_BACKEND", "jax"),), "pip install jax keras"),
    Implementation("tf-keras", "tf_keras", ("tensorflow", "tf_keras"), (), "pip install 'xentdbg[legacy]'"),
    Implementation("optax", "optax", ("jax", "optax"), (), "pip install optax"),
    Implementation("reference", "reference", ()),
)}


@dataclass(frozen=True)
class ImplResult:
    """One row of the report. ``status``: ``ok``, ``not installed``, ``n/a`` or ``error`` (see ``message``)."""

    key: str
    label: str
    status: str
    call: str
    version: str = ""
    dtype: str = ""
    per_sample: np.ndarray | None = None
    reduced: float | None = None  # the library's value, exactly (a float32 widened to a Python float)
    gradient: np.ndarray | None = None
    via_activation: float | None = None  # logits mode: the loss on keras.activations.softmax/sigmoid(y_pred)
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def call_text(key: str, loss: str, from_logits: bool) -> str:
    """The API call a user would write, as shown in the report."""
    arg = "from_logits=True" if from_logits else ""
    if key in ("keras-tf", "keras-jax"):
        return f"keras.losses.{_CLASS[loss]}({arg})(y_true, y_pred)"
    if key == "tf-keras":
        return f"tf_keras.losses.{_CLASS[loss]}({arg})(y_true, y_pred)"
    if key == "optax":
        return f"jnp.mean(optax.{_OPTAX[loss]}(y_pred, y_true){'.mean(-1)' if loss == BCE else ''})"
    return {BCE: "mean(-(t·log p + (1-t)·log(1-p)))", CCE: "mean(-Σ t·log p)", SCCE: "mean(-log p[y])"}[loss] \
        + (" on p = softmax/sigmoid(y_pred), via log-sum-exp" if from_logits else ", no clipping")


def not_applicable(key: str, loss: str, from_logits: bool) -> str | None:
    """Why ``key`` has no equivalent of this call, or None."""
    if key == "optax" and not from_logits:
        return (f"optax's cross-entropies take logits only (optax.{_OPTAX[loss]}); "
                "rerun with --from-logits on the logits")
    return None


def run(inputs: LossInputs, keys: tuple[str, ...], timeout: float = DEFAULT_TIMEOUT) -> list[ImplResult]:
    """Evaluate ``inputs`` in each implementation of ``keys``, the children in parallel, in ``keys`` order."""
    with tempfile.TemporaryDirectory(prefix="xentdbg-loss-") as tmp:
        np.savez(Path(tmp) / "inputs.npz", y_true=inputs.y_true, y_pred=inputs.y_pred)
        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            futures = [pool.submit(_run_one, key, inputs, Path(tmp), timeout) for key in keys]
            return [f.result() for f in futures]


def _run_one(key: str, inputs: LossInputs, folder: Path, timeout: float) -> ImplResult:
    impl = IMPLEMENTATIONS[key]
    base: dict[str, Any] = dict(key=key, label=impl.label, call=call_text(key, inputs.loss, inputs.from_logits))
    reason = not_applicable(key, inputs.loss, inputs.from_logits)
    if reason:
        return ImplResult(status="n/a", message=reason, **base)
    missing = [m for m in impl.modules if not _installed(m)]
    if missing:
        return ImplResult(status="not installed", message=f"{', '.join(missing)} not installed ({impl.install})",
                          **base)
    start = time.perf_counter()
    if key == "reference":
        per, red, grad = reference(inputs.loss, inputs.y_true, inputs.y_pred, inputs.from_logits)
        return ImplResult(status="ok", version=f"numpy {np.__version__}", dtype="float64", per_sample=per,
                          reduced=float(red), gradient=grad, seconds=time.perf_counter() - start, **base)
    meta, arrays = _child(key, inputs, folder, timeout)
    seconds = time.perf_counter() - start
    if meta.get("status") != "ok":
        return ImplResult(status=meta.get("status", "error"), message=meta.get("message", ""),
                          version=meta.get("version", ""), seconds=seconds, **base)
    via = arrays.get("via_activation")
    return ImplResult(status="ok", version=meta["version"], dtype=str(arrays["per_sample"].dtype),
                      per_sample=arrays["per_sample"], reduced=float(arrays["reduced"]), gradient=arrays["gradient"],
                      via_activation=None if via is None else float(via), seconds=seconds, **base)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # looks, does not import
    except (ImportError, ValueError):
        return False


def _child(key: str, inputs: LossInputs, folder: Path, timeout: float) -> tuple[dict, dict[str, np.ndarray]]:
    """Run ``python -m xentdbg.losses._child`` for ``key``; its JSON metadata and its arrays."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           **dict(IMPLEMENTATIONS[key].env)}
    cmd = [sys.executable, "-m", "xentdbg.losses._child", key, inputs.loss, str(int(inputs.from_logits)), str(folder)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "message": f"timed out after {timeout:g} s"}, {}
    meta_path = folder / f"{key}.json"
    if not meta_path.exists():
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        return {"status": "error", "message": f"its process exited with code {proc.returncode}: {tail[0]}"}, {}
    meta = json.loads(meta_path.read_text())
    if meta.get("status") != "ok":
        return meta, {}
    with np.load(folder / f"{key}.npz", allow_pickle=False) as data:
        return meta, {name: data[name] for name in data.files}


# --- inside a child process ------------------------------------------------------------------------


def keras3(loss: str, y_true: np.ndarray, y_pred: np.ndarray, from_logits: bool) -> tuple[dict, str]:
    """Keras 3 on this process's backend (``KERAS_BACKEND``): the loss function, the loss object, its gradient."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        pred = jnp.asarray(y_pred)
        version = f"Keras {keras.__version__}, JAX {jax.__version__}"
    else:
        import tensorflow as tf

        pred = tf.constant(y_pred)
        version = f"Keras {keras.__version__}, TensorFlow {tf.__version__}"
    loss_object = getattr(keras.losses, _CLASS[loss])(from_logits=from_logits)
    out = {"per_sample": getattr(keras.losses, loss)(y_true, pred, from_logits=from_logits),
           "reduced": loss_object(y_true, pred),
           "gradient": _gradient(backend, lambda p: loss_object(y_true, p), pred)}
    if from_logits:  # what a model whose last layer is this activation hands the loss
        probs = getattr(keras.activations, _ACTIVATION[loss])(pred)
        out["via_activation"] = getattr(keras.losses, _CLASS[loss])()(y_true, probs)
    return {k: np.asarray(v) for k, v in out.items()}, version


def tf_keras(loss: str, y_true: np.ndarray, y_pred: np.ndarray, from_logits: bool) -> tuple[dict, str]:
    """tf_keras (Keras 2 on TensorFlow), eager: the loss function, the loss object, its gradient."""
    import tensorflow as tf
    import tf_keras as tfk

    pred = tf.constant(y_pred)
    loss_object = getattr(tfk.losses, _CLASS[loss])(from_logits=from_logits)
    out = {"per_sample": getattr(tfk.losses, loss)(y_true, pred, from_logits=from_logits),
           "reduced": loss_object(y_true, pred),
           "gradient": _gradient("tensorflow", lambda p: loss_object(y_true, p), pred)}
    if from_logits:
        probs = getattr(tfk.activations, _ACTIVATION[loss])(pred)
        out["via_activation"] = getattr(tfk.losses, _CLASS[loss])()(y_true, probs)
    return {k: np.asarray(v) for k, v in out.items()}, f"tf_keras {tfk.__version__}, TensorFlow {tf.__version__}"


def optax_loss(loss: str, y_true: np.ndarray, y_pred: np.ndarray, from_logits: bool) -> tuple[dict, str]:
    """optax on logits; binary: element-wise, averaged over the last axis like Keras' per-sample loss."""
    import jax
    import jax.numpy as jnp
    import optax

    fn = getattr(optax, _OPTAX[loss])
    labels = y_true.reshape(y_pred.shape[:-1]) if loss == SCCE else y_true

    def per_sample(z):
        value = fn(z, labels)
        return value.mean(-1) if loss == BCE else value

    pred = jnp.asarray(y_pred)
    out = {"per_sample": per_sample(pred), "reduced": jnp.mean(per_sample(pred)),
           "gradient": jax.grad(lambda z: jnp.mean(per_sample(z)))(pred)}
    return {k: np.asarray(v) for k, v in out.items()}, f"optax {optax.__version__}, JAX {jax.__version__}"


CHILD_FUNCTIONS = {"keras-tf": keras3, "keras-jax": keras3, "tf-keras": tf_keras, "optax": optax_loss}


def _gradient(backend: str, fn, pred):
    if backend == "jax":
        import jax

        return jax.grad(fn)(pred)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(pred)
        value = fn(pred)
    return tape.gradient(value, pred)
