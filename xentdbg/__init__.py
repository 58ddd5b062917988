"""xentdbg: find the first tensor where two training setups diverge.

Importing this package loads neither TensorFlow nor JAX: frameworks are imported
only inside the worker processes that run a setup. Nor does it load the comparison
engine: each public name is imported on first use (PEP 562 ``__getattr__``), so that a
replay worker or fork server, which bootstraps this package before anything else, and
``xentdbg --help`` import only what they use. Eagerly, the package cost 0.2-0.3 s of CPU
per process (``python -X importtime``, 2026-11-25), on the path from a comparison's start
to its first step.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# The subpackage first: importing it binds ``xentdbg.compare`` to it, and the function
# defined below takes the name back. Later imports of ``xentdbg.compare.*`` find it in
# ``sys.modules`` and leave this package's attribute alone.
import xentdbg.compare  # noqa: F401  (empty: no cost)

if TYPE_CHECKING:
    from xentdbg.compare.metrics import Tolerance
    from xentdbg.compare.result import CompareConfig, CompareResult
    from xentdbg.data import DataInfo, DataSpec
    from xentdbg.data.declared import declare
    from xentdbg.errors import SetupFailed, UsageError, XentdbgError
    from xentdbg.records import CaptureMode
    from xentdbg.setups import JaxLoop, JaxStep, KerasFit, KerasLoop, LegacyKerasFunction, NnxStep
    from xentdbg.trace.reader import Trace
    from xentdbg.version import __version__

_LAZY = {
    "Tolerance": "xentdbg.compare.metrics",
    "CompareConfig": "xentdbg.compare.result", "CompareResult": "xentdbg.compare.result",
    "DataInfo": "xentdbg.data", "DataSpec": "xentdbg.data",
    "declare": "xentdbg.data.declared",
    "SetupFailed": "xentdbg.errors", "UsageError": "xentdbg.errors", "XentdbgError": "xentdbg.errors",
    "CaptureMode": "xentdbg.records",
    **{name: "xentdbg.setups" for name in ("JaxLoop", "JaxStep", "KerasFit", "KerasLoop", "LegacyKerasFunction",
                                           "NnxStep")},
    "__version__": "xentdbg.version",
}


def __getattr__(name: str) -> Any:
    """``xentdbg.NAME`` for a public name not imported yet: import its module, keep it here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xentdbg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def compare(config: CompareConfig, on_step: Callable[[Any], None] | None = None,
            on_status: Callable[[str], None] | None = None,
            on_pass: Callable[[str, int], None] | None = None) -> CompareResult:
    """Replay both setups in lockstep and compare every step: :func:`xentdbg.replay.engine.compare`."""
    from xentdbg.replay.engine import compare as run

    return run(config, on_step, on_status, on_pass)


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
