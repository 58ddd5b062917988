"""Python-level hooks on Keras layers (Keras 3 and tf_keras): training flags and activations.

Every leaf layer's ``call`` is replaced by a wrapper that only *observes*: it adds no
op to any graph it is traced into, so the user's compiled train step is unchanged.

- Training flags: ``Layer.__call__`` resolves ``training`` (explicit argument, outer
  call, signature default; keras/src/layers/layer.py ~L1065, Keras 3.15) and passes it
  to ``call`` when the signature has it and the value is not None (tf_keras's
  ``Layer.__call__`` likewise, tf_keras/src/engine/base_layer.py ``_set_training_mode``,
  and it calls the instance's ``call``). For each layer whose
  ``call`` reads ``training`` the wrapper records the value it received (None when none
  was passed) when the user's step is traced (or run eagerly).
- Activations: while :meth:`LayerHooks.collect` is active (only inside xentdbg's own
  recompute function), each layer's output is appended in call (= forward) order; under
  a ``tf.distribute`` strategy, per replica (:meth:`LayerHooks.collect_per_replica`).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from xentdbg.adapters import _keras_private
from xentdbg.adapters._keras_flavour import flavour_of


def leaf_layers(model: Any) -> list[Any]:
    """Layers without sublayers, in the order Keras tracks them (Keras 3 or tf_keras models)."""
    flavour = flavour_of(model)
    flatten = flavour.flatten_layers if flavour is not None else _keras_private.flatten_layers
    out = []
    for layer in flatten(model, recursive=True):
        if not flatten(layer, recursive=False):
            out.append(layer)
    return out


def reads_training(layer: Any) -> bool:
    """Whether the layer's ``call`` body uses its ``training`` argument.

    Keras 3.15's ``Dense.call(inputs, training=None)`` takes the argument and ignores it
    (keras/src/layers/core/dense.py ~L221); a flag that differs there changes nothing.
    BatchNormalization and Dropout read it. Without source, assume it is read.
    """
    call = type(layer).call
    try:
        if "training" not in inspect.signature(call).parameters:
            return False
        func = ast.parse(textwrap.dedent(inspect.getsource(call))).body[0]
    except (OSError, TypeError, ValueError, SyntaxError, IndexError):
        return True
    if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
        return True
    return any(isinstance(node, ast.Name) and node.id == "training"
               for stmt in func.body for node in ast.walk(stmt))


def _as_flag(value: Any) -> bool | None | str:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (np.bool_, np.integer)):
        return bool(value)
    return f"<{type(value).__name__}>"  # a symbolic tensor: the value is decided per run


class LayerHooks:
    """Wraps each leaf layer's ``call``; see the module docstring."""

    def __init__(self, model: Any):
        self.layers = leaf_layers(model)
        self.flags: dict[str, bool | None | str] = {}
        self.recording = True  # False while fit validates, evaluates or predicts: those calls are not training
        self._collector: list[tuple[str, Any]] | None = None
        self._by_replica: dict[int, list[tuple[str, Any]]] | None = None
        self._replica_of: Callable[[], int | None] = lambda: 0
        for layer in self.layers:
            self._wrap(layer)

    @property
    def collecting(self) -> bool:
        return self._collector is not None

    def _wrap(self, layer: Any) -> None:
        original = layer.call
        name = layer.name
        has_training = reads_training(layer)
        if has_training:
            self.flags[name] = None

        @functools.wraps(original)
        def call(*args, **kwargs):
            if self._collector is None and has_training and self.recording:
                self.flags[name] = _as_flag(kwargs.get("training"))
            out = original(*args, **kwargs)
            if self._by_replica is not None:
                self._by_replica.setdefault(self._replica_of() or 0, []).append((name, out))
            elif self._collector is not None:
                self._collector.append((name, out))
            return out

        layer.call = call

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[tuple[str, Any]]]:
        """Collect layer outputs (at trace time inside a compiled function)."""
        self._collector = []
        try:
            yield self._collector
        finally:
            self._collector = None

    @contextlib.contextmanager
    def collect_per_replica(self, replica_of: Callable[[], int | None]) -> Iterator[dict[int, list[tuple[str, Any]]]]:
        """As :meth:`collect`, each output under the replica ``replica_of()`` says the
        layer ran in (replicas of a ``tf.distribute`` strategy each call every layer)."""
        self._collector, self._by_replica, self._replica_of = [], {}, replica_of
        try:
            yield self._by_replica
        finally:
            self._collector, self._by_replica = None, None


def joined_replicas(by_replica: dict[int, list[tuple[str, Any]]]) -> list[tuple[str, Any]]:
    """Each layer's output over the global batch: the replicas' outputs (the same layers
    in the same order in every replica) joined along the batch axis in replica order,
    the order in which the replicas' slices make up the global batch."""
    import tensorflow as tf

    replicas = [by_replica[r] for r in sorted(by_replica)]
    if not replicas:
        return []
    names = [n for n, _ in replicas[0]]
    if any([n for n, _ in other] != names for other in replicas[1:]):
        return []  # replicas called other layers: no per-layer view of the global batch
    return [(n, tf.concat([r[j][1] for r in replicas], axis=0)) for j, n in enumerate(names)]
