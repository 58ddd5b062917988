"""xentdbg: find the first tensor where two training setups diverge.

Importing this package loads neither TensorFlow nor JAX: frameworks are imported
only inside the worker processes that run a setup.
"""

__version__ = "0.1.0"

from xentdbg.compare.metrics import Tolerance
from xentdbg.data import DataInfo, DataSpec
from xentdbg.errors import SetupFailed, UsageError, XentdbgError
from xentdbg.replay.engine import CompareConfig, CompareResult, compare
from xentdbg.setups import JaxLoop, KerasFit, KerasLoop, LegacyKerasFunction


def load_trace(path):
    """Open a trace written by ``xentdbg trace`` (see :func:`xentdbg.trace.reader.load_trace`)."""
    from xentdbg.trace.reader import load_trace as _load

    return _load(path)


__all__ = ["CompareConfig", "CompareResult", "DataInfo", "DataSpec", "JaxLoop", "KerasFit", "KerasLoop", "LegacyKerasFunction", "SetupFailed",
           "Tolerance", "UsageError", "XentdbgError", "compare", "load_trace", "__version__"]
