"""xentdbg: find the first tensor where two training setups diverge.

Importing this package loads neither TensorFlow nor JAX: frameworks are imported
only inside the worker processes that run a setup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.data import DataInfo, DataSpec
from xentdbg.errors import SetupFailed, UsageError, XentdbgError
from xentdbg.records import CaptureMode
from xentdbg.replay.engine import compare
from xentdbg.setups import JaxLoop, KerasFit, KerasLoop, LegacyKerasFunction
from xentdbg.version import __version__

if TYPE_CHECKING:
    from xentdbg.trace.reader import Trace


def load_trace(path: str) -> Trace:
    """Open a trace written by ``xentdbg trace`` (see :func:`xentdbg.trace.reader.load_trace`)."""
    from xentdbg.trace.reader import load_trace as _load

    return _load(path)


__all__ = ["CaptureMode", "CompareConfig", "CompareResult", "DataInfo", "DataSpec", "JaxLoop", "KerasFit", "KerasLoop",
           "LegacyKerasFunction", "SetupFailed", "Tolerance", "UsageError", "XentdbgError", "compare", "load_trace",
           "__version__"]
