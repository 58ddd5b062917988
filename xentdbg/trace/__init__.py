"""HDF5 traces: what one side captured, step by step (see docs/trace-format.md)."""

from xentdbg.trace.reader import LazyTensor, Trace, TraceError, load_trace
from xentdbg.trace.writer import TraceWriter

__all__ = ["LazyTensor", "Trace", "TraceError", "TraceWriter", "load_trace"]
