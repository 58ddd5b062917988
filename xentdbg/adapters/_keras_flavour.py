"""Keras 3 (``keras``) or Keras 2 (``tf_keras``): what the TensorFlow Keras adapters read
differently from the two.

:class:`xentdbg.KerasFit` and :class:`xentdbg.KerasLoop` take a model of either library:
the same ``tf.keras`` code builds a Keras 3 model, or a tf_keras one when
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported (tensorflow/__init__.py
picks ``tf.keras`` from that variable, TensorFlow 2.16 onward). The adapters run both
through the same capture; a :class:`Flavour` answers the questions whose answer differs:

==========================  ==============================  ====================================
question                    Keras 3.15                      tf_keras 2.21
==========================  ==============================  ====================================
a variable's name           ``v.path`` (``seq/dense/kernel``) ``v.name`` less ``:0`` (``dense/kernel``)
its value as a tensor       ``v.value``                     ``tf.convert_to_tensor(v)``
float state?                ``backend.is_float_dtype``      ``v.dtype.is_floating``
metrics' variables          ``model.metrics_variables``     each of ``model.metrics``' ``variables``
optimizer's variables       ``optimizer.variables`` (list)  ``optimizer.variables`` (a callable list)
floatx                      ``keras.config.floatx()``       ``tf_keras.backend.floatx()``
leaf layers                 :mod:`._keras_private`          :mod:`._tf_keras_private`
==========================  ==============================  ====================================

Names are only labels: parameters pair across the two libraries by layer order, role and
shape (:func:`xentdbg.compare.params.match_parameters`), so ``sequential/dense/kernel``
pairs with ``dense/kernel``.

Nothing here imports Keras, tf_keras or TensorFlow: :func:`flavour_of` looks the two
libraries up in ``sys.modules`` (the setup imported whichever built the model).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from xentdbg.errors import UsageError


@dataclass(frozen=True)
class Flavour:
    """One of the two Keras libraries; see the module docstring."""

    legacy: bool  # True: tf_keras (Keras 2)
    module: Any  # the ``keras`` or ``tf_keras`` module

    @property
    def label(self) -> str:
        return "tf_keras" if self.legacy else "keras"

    def versions(self) -> dict[str, str]:
        """The library's version under its own name (``keras`` or ``tf_keras``), and which
        of the two ran the model under ``library`` (a worker may have imported both)."""
        return {self.label: str(self.module.__version__), "library": self.label}

    def name(self, variable: Any) -> str:
        return variable.name.split(":")[0] if self.legacy else variable.path

    def value(self, variable: Any) -> Any:
        """The variable's current value as a tensor (a read; in a graph, a read op)."""
        if self.legacy:
            import tensorflow as tf

            return tf.convert_to_tensor(variable)
        return variable.value

    def is_float(self, variable: Any) -> bool:
        if self.legacy:
            return bool(variable.dtype.is_floating)
        return bool(self.module.backend.is_float_dtype(variable.dtype))

    def metrics_variables(self, model: Any) -> list[Any]:
        if self.legacy:
            return [v for metric in model.metrics for v in metric.variables]
        return list(model.metrics_variables)

    def optimizer_variables(self, optimizer: Any) -> list[Any]:
        # tf_keras/src/optimizers/optimizer.py:860  ``variables`` is a property returning a
        # CallableList (:1466), a list that may also be called as the legacy method was
        return list(optimizer.variables)

    def floatx(self) -> str:
        return str(self.module.backend.floatx() if self.legacy else self.module.config.floatx())

    def callback_base(self) -> type:
        return self.module.callbacks.Callback

    def flatten_layers(self, layer: Any, recursive: bool) -> list[Any]:
        if self.legacy:
            from xentdbg.adapters import _tf_keras_private

            return _tf_keras_private.flatten_layers(layer, recursive)
        from xentdbg.adapters import _keras_private

        return _keras_private.flatten_layers(layer, recursive)


def dtype_of(variable: Any) -> np.dtype:
    """A variable's dtype for numpy: Keras 3 spells it as a string, tf_keras as a ``tf.DType``."""
    dtype = variable.dtype
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def flavour_of(model: Any) -> Flavour | None:
    """The library ``model`` is a ``Model`` of, or None when it is neither's."""
    for legacy, name in ((False, "keras"), (True, "tf_keras")):
        module = sys.modules.get(name)
        if module is not None and isinstance(model, module.Model):
            if legacy:
                from xentdbg.adapters import _tf_keras_private

                _tf_keras_private.tf_keras_version()  # the range check, once
            return Flavour(legacy, module)
    return None


def unreplayed(kind: str, step: int, recomputed: Any, stepped: Any, random_layers: list[str]) -> UsageError:
    """The error for a tf_keras step whose recompute (``kind``: what recomputed it) did not
    give the step's own loss bitwise: the gradients it gave are not the applied ones.
    ``random_layers``: the model's layers that draw with stateful random ops."""
    got = "nothing" if recomputed is None else format(float(np.asarray(recomputed).reshape(())), ".9g")
    why = (f" Layer(s) {', '.join(random_layers)} draw random numbers with TensorFlow's stateful ops, which a "
           "recompute replays only under a global seed." if random_layers else "")
    return UsageError(
        f"{kind} (tf_keras) step {step}: recomputing the step from its pre-step weights gave the loss {got}, the "
        f"step computed {float(np.asarray(stepped).reshape(())):.9g}; the gradients xentdbg would record are not "
        f"the ones the step applied.{why}",
        hint="Seed TensorFlow in the setup before building the model (tf.keras.utils.set_random_seed(0)), or "
             "compare with --fingerprint, which records the step's own loss and no gradients.")


def model_error(kind: str, model: Any) -> str:
    """The message for a ``kind`` setup given something that is no Keras model."""
    return (f"{kind} got a {type(model).__name__}, which is neither a keras.Model (Keras 3) nor a "
            f"tf_keras Model (Keras 2).")
