"""The fences around library internals: version ranges and missing internals.

The fast tests import no framework: the version checks take a version string, and the
accessors are called on plain Python objects (the installed Keras / tf_keras versions
are read from their distributions' metadata). The slow ones run the accessors on real
Keras and tf_keras objects in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from xentdbg.adapters import _keras_private as keras_private
from xentdbg.adapters import _tf_keras_private as tf_keras_private
from xentdbg.adapters._library_guard import check_range, major_minor
from xentdbg.errors import EXIT_USAGE, UnsupportedLibrary, UsageError

from conftest import ROOT

# -- version checks --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.15.0", "3.15.1", "3.15.2rc1", "3.15.0.dev20250101"])
def test_keras_versions_in_range_pass(version: str) -> None:
    check_range(keras_private.KERAS, version)


@pytest.mark.parametrize("version", ["3.14.9", "3.16.0", "3.16.0rc1", "4.0.0", "2.15.0", "nightly"])
def test_keras_versions_outside_range_raise(version: str) -> None:
    with pytest.raises(UnsupportedLibrary) as info:
        check_range(keras_private.KERAS, version)
    error = info.value
    assert isinstance(error, UsageError) and error.exit_code == EXIT_USAGE
    assert f"keras {version}" in error.message
    assert ">=3.15,<3.16" in error.message
    assert "pip install 'keras>=3.15,<3.16'" in (error.hint or "")


@pytest.mark.parametrize("version", ["2.18.0", "2.19.1", "2.21.0"])
def test_tf_keras_versions_in_range_pass(version: str) -> None:
    check_range(tf_keras_private.TF_KERAS, version)


@pytest.mark.parametrize("version", ["2.17.0", "2.22.0", "3.15.1"])
def test_tf_keras_versions_outside_range_raise(version: str) -> None:
    with pytest.raises(UnsupportedLibrary) as info:
        check_range(tf_keras_private.TF_KERAS, version)
    assert f"tf_keras {version}" in info.value.message
    assert "pip install 'tf_keras>=2.18,<2.22'" in (info.value.hint or "")


@pytest.mark.parametrize(("version", "ok"), [("2.21.0", True), ("2.18.0", True), ("2.17.1", False), ("2.22.0", False)])
def test_tensorflow_version_check(version: str, ok: bool) -> None:
    if ok:
        check_range(keras_private.TENSORFLOW, version)
    else:
        with pytest.raises(UnsupportedLibrary, match=f"tensorflow {version}"):
            check_range(keras_private.TENSORFLOW, version)


def test_major_minor_parsing() -> None:
    assert major_minor("3.15.1") == (3, 15)
    assert major_minor("2.21.0rc1") == (2, 21)
    assert major_minor("v3.16") == (3, 16)
    assert major_minor("3") is None
    assert major_minor("") is None


def test_installed_versions_are_in_their_tested_ranges() -> None:
    """The real installed Keras and tf_keras (read without importing them) pass the check
    the accessors run on first use."""
    assert major_minor(keras_private.keras_version()) == (3, 15)
    assert keras_private.KERAS.minimum <= major_minor(keras_private.keras_version()) < keras_private.KERAS.below
    tf_keras = major_minor(tf_keras_private.tf_keras_version())
    assert tf_keras is not None and tf_keras_private.TF_KERAS.minimum <= tf_keras < tf_keras_private.TF_KERAS.below


# -- missing internals -------------------------------------------------------------------


def _enter_override(obj: Any) -> None:
    with keras_private.override_losses(obj, ["loss"]):
        pass


MISSING: list[tuple[str, Callable[[Any], Any]]] = [
    ("Layer._flatten_layers", lambda o: keras_private.flatten_layers(o, recursive=True)),
    ("Layer._call_has_training_arg", keras_private.call_has_training_arg),
    ("Layer._losses_override", _enter_override),
    ("JAXTrainer._jax_state", keras_private.jax_trainer_state),
    ("JAXTrainer.jax_state_sync", keras_private.jax_state_sync),
    ("JAXTrainer.make_train_function", lambda o: keras_private.observe_jax_train_steps(o, lambda s, d: None)),
    ("BaseOptimizer._trainable_variables", keras_private.optimizer_trainable_variables),
    ("Function._jit_compile", keras_private.tf_function_jit_compile),
]


@pytest.mark.parametrize(("internal", "access"), MISSING, ids=[name for name, _ in MISSING])
def test_accessor_on_object_without_the_internal_raises(internal: str, access: Callable[[Any], Any]) -> None:
    with pytest.raises(UnsupportedLibrary) as info:
        access(object())
    error = info.value
    assert internal in error.message
    library = "tensorflow" if internal.startswith("Function.") else "keras"
    version = keras_private.tensorflow_version() if library == "tensorflow" else keras_private.keras_version()
    assert f"{library} {version}" in error.message
    assert f"pip install '{library}>=" in (error.hint or "")


def test_epoch_iterators_kept_without_the_tf_trainer_module_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras' TensorFlow trainer module is looked up, never imported: where it is not
    loaded (or lacks ``TFEpochIterator._get_iterator``) the accessor refuses."""
    monkeypatch.delitem(sys.modules, "keras.src.backend.tensorflow.trainer", raising=False)
    with pytest.raises(UnsupportedLibrary, match="TFEpochIterator._get_iterator") as info:
        with keras_private.epoch_iterators_kept([]):
            pass
    assert f"keras {keras_private.keras_version()}" in info.value.message
    monkeypatch.setitem(sys.modules, "keras.src.backend.tensorflow.trainer", SimpleNamespace(TFEpochIterator=object))
    with pytest.raises(UnsupportedLibrary, match="TFEpochIterator._get_iterator"):
        with keras_private.epoch_iterators_kept([]):
            pass


def test_jax_train_state_must_be_the_four_tuple() -> None:
    assert keras_private.jax_train_state_variables(("tv", "ntv", "opt", "metrics")) == ("tv", "ntv", "metrics")
    with pytest.raises(UnsupportedLibrary, match="4-tuple train state"):
        keras_private.jax_train_state_variables(("tv", "ntv", "metrics"))


def test_jax_trainer_state_outside_fit_raises() -> None:
    """After fit, Keras sets ``_jax_state`` back to None (keras/src/backend/jax/trainer.py:546)."""
    with pytest.raises(UnsupportedLibrary, match="_jax_state"):
        keras_private.jax_trainer_state(SimpleNamespace(_jax_state=None))
    state = {"trainable_variables": [1], "non_trainable_variables": [2]}
    assert keras_private.jax_trainer_state(SimpleNamespace(_jax_state=state)) == ([1], [2])


def test_override_losses_sets_and_clears() -> None:
    model = SimpleNamespace(_losses_override=[])
    with keras_private.override_losses(model, ["l1"]):
        assert model._losses_override == ["l1"]
    assert model._losses_override == []
    with keras_private.override_losses(model, []):  # nothing to override: nothing set
        assert model._losses_override == []


def test_observe_jax_train_steps_wraps_once() -> None:
    """The wrapper sees each batch, passes the same batch on, and is not wrapped again."""
    seen: list[tuple[Any, Any]] = []

    class Model:
        train_function: Any = None

        def make_train_function(self, force: bool = False) -> None:
            if self.train_function is None or force:
                self.train_function = lambda state, iterator: (state, next(iterator))

    model = Model()
    keras_private.observe_jax_train_steps(model, lambda state, data: seen.append((state, data)))
    model.make_train_function()
    first = model.train_function
    assert first(("s",), iter(["batch0", "batch1"])) == (("s",), "batch0")
    assert seen == [(("s",), "batch0")]
    model.make_train_function()  # cached train function: already observed
    assert model.train_function is first


# -- real frameworks -------------------------------------------------------------------------

KERAS_CHECK = """
import json, tensorflow as tf, keras
from xentdbg.adapters import _keras_private as p
from xentdbg.adapters._keras_hooks import leaf_layers
from xentdbg.errors import UnsupportedLibrary
inner = keras.Sequential([keras.layers.Dense(3, name="d2"), keras.layers.ReLU(name="r")], name="inner")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"),
                          keras.layers.BatchNormalization(name="bn"), inner])
opt = keras.optimizers.SGD()
opt.build(model.trainable_variables)
out = {
    "leaves": [l.name for l in leaf_layers(model)],
    "children": [l.name for l in p.flatten_layers(model, recursive=False)],
    "same_as_internal": all([l.name for l in p.flatten_layers(model, recursive=r)]
                            == [l.name for l in model._flatten_layers(include_self=False, recursive=r)]
                            for r in (True, False)),
    "training_arg": p.call_has_training_arg(model),
    "dense_training_arg": p.call_has_training_arg(model.layers[0]),
    "optimizer_vars": len(p.optimizer_trainable_variables(opt)) == len(model.trainable_variables),
    "jit": [p.tf_function_jit_compile(tf.function(lambda: 0, jit_compile=j)) for j in (True, False, None)],
}
with p.override_losses(model, [tf.constant(2.0)]):
    out["losses"] = [float(l) for l in model.losses]
out["losses_after"] = len(model.losses)
try:
    p.jax_trainer_state(model)  # the TensorFlow backend has no JAX trainer state
except UnsupportedLibrary as e:
    out["missing"] = e.message
import contextlib, numpy as np
from keras.src.backend.tensorflow.trainer import TFEpochIterator
original = TFEpochIterator._get_iterator
def fit(kept):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    m.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.arange(24, dtype="float32").reshape(6, 4) / 24, np.ones((6, 2), "float32")
    with p.epoch_iterators_kept(kept) if kept is not None else contextlib.nullcontext():
        m.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0)
    return [w.tobytes().hex() for w in m.get_weights()]
kept = []
out["fit_same_bits"] = fit(kept) == fit(None)
out["kept"] = [type(i).__name__ for i in kept]
out["restored"] = TFEpochIterator._get_iterator is original
print(json.dumps(out))
"""

TF_KERAS_CHECK = """
import json, tensorflow as tf
tf.compat.v1.disable_eager_execution()
from xentdbg.adapters import _tf_keras_private as p
phase = p.symbolic_learning_phase()
import xentdbg
print(json.dumps({"op": phase.op.type, "dtype": phase.dtype.name, "same": phase is p.symbolic_learning_phase(),
                  "public": phase is xentdbg.legacy_learning_phase()}))
"""


def _run(code: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    # Once the result is printed, end without unloading TensorFlow (~1 s of CPU).
    code += "\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_keras_accessors_on_real_objects() -> None:
    out = _run(KERAS_CHECK)
    # Keras's own tracking order (sublayers pushed with deque.extendleft), input layers included
    assert out["leaves"] == ["input_layer", "d1", "bn", "r", "d2", "input_layer_1"]
    assert out["children"] == ["input_layer", "d1", "bn", "inner"]
    assert out["same_as_internal"] is True
    assert out["training_arg"] is True and out["dense_training_arg"] is True
    assert out["optimizer_vars"] is True
    assert out["jit"] == [True, False, None]
    assert out["losses"] == [2.0] and out["losses_after"] == 0
    assert "JAXTrainer._jax_state" in out["missing"] and "keras 3.15" in out["missing"]
    # fit's tf.data iterators, all kept: two per epoch, one at its start (fit passes no
    # steps_per_epoch: keras/src/trainers/epoch_iterator.py:110-111) and one at its end
    # (:124-125); the weights are the same bits as without
    assert out["kept"] == ["OwnedIterator"] * 6
    assert out["fit_same_bits"] is True and out["restored"] is True


@pytest.mark.slow
def test_tf_keras_symbolic_learning_phase_is_the_graph_placeholder() -> None:
    out = _run(TF_KERAS_CHECK)
    # xentdbg.legacy_learning_phase() is the public face of the same tensor
    assert out == {"op": "PlaceholderWithDefault", "dtype": "bool", "same": True, "public": True}


def test_private_modules_import_no_framework() -> None:
    code = ("import sys, xentdbg.adapters, xentdbg.adapters._keras_private, xentdbg.adapters._tf_keras_private, "
            "xentdbg.adapters._keras_hooks, xentdbg.adapters.base\n"
            "print(sorted(m for m in ('tensorflow', 'jax', 'keras', 'tf_keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
