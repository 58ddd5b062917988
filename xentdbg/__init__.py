"""xentdbg: find the first tensor where two training setups diverge.

Importing this package loads neither TensorFlow nor JAX: frameworks are imported
only inside the worker processes that run a setup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.data import DataInfo, DataSpec
from xentdbg.data.declared import declare
from xentdbg.errors import SetupFailed, UsageError, XentdbgError
from xentdbg.records import CaptureMode
from xentdbg.replay.engine import compare
from xentdbg.setups import JaxLoop, JaxStep, KerasFit, KerasLoop, LegacyKerasFunction, NnxStep
from xentdbg.version import __version__

if TYPE_CHECKING:
    from xentdbg.trace.reader import Trace


def load_trace(path: str) -> Trace:
    """Open a trace written by ``xentdbg trace`` (see :func:`xentdbg.trace.reader.load_trace`)."""
    from xentdbg.trace.reader import load_trace as _load

    return _load(path)


def legacy_learning_phase() -> Any:
    """The learning-phase tensor a TF1-style tf_keras ``K.function`` is fed (for
    :class:`LegacyKerasFunction`): put it in ``K.function``'s inputs and feed ``True`` for a
    training step. It is tf_keras' ``symbolic_learning_phase()`` (tf_keras/src/backend.py:384,
    not exported by ``tf_keras.backend``), a ``placeholder_with_default(False)`` of the current
    graph: left unfed, Dropout and BatchNormalization run in inference mode. Needs tf_keras
    (``pip install 'xentdbg[legacy]'``); the tf_keras version is checked first."""
    from xentdbg.adapters._tf_keras_private import symbolic_learning_phase

    return symbolic_learning_phase()


__all__ = ["CaptureMode", "CompareConfig", "CompareResult", "DataInfo", "DataSpec", "JaxLoop", "JaxStep", "KerasFit",
           "KerasLoop", "LegacyKerasFunction", "NnxStep", "SetupFailed", "Tolerance", "UsageError", "XentdbgError",
           "compare", "declare", "legacy_learning_phase", "load_trace", "__version__"]
