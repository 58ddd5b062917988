"""How xentdbg's child processes (replay workers, ``xentdbg loss`` implementations) end."""

from __future__ import annotations

import sys
from typing import Any

_KEPT: list[Any] | None = None


def ends_with_fast_exit() -> None:
    """Declare that this process ends with :func:`fast_exit` (a replay worker does, from
    its start): from now on :func:`kept_until_exit` gives a list."""
    global _KEPT
    if _KEPT is None:
        _KEPT = []


def kept_until_exit() -> list[Any] | None:
    """A list whose items live until the process ends, never freed (:func:`fast_exit`
    skips garbage collection), in a process that declared :func:`ends_with_fast_exit`;
    None in any other. There, keeping an object whose destruction blocks (a ``tf.data``
    iterator: :func:`xentdbg.adapters._keras_private.epoch_iterators_kept`) would only move
    that wait to when the object is freed, where an iterator kept long waits longer."""
    return _KEPT


def fast_exit(code: int) -> None:
    """End the process without the interpreter's teardown.

    Unloading TensorFlow or JAX module by module costs ~1 s of CPU per process (measured
    on a TensorFlow worker: 1.2 s from its channel closing to its exit, 0.05 s this way),
    and the parent waits for each child to exit. Call this only when everything the
    process had to say is sent or on disk. The ``atexit`` handlers still run (the setup's
    and the libraries' own), and stdout and stderr are flushed; only module finalization
    and garbage collection are skipped (a file a setup opened and neither flushed nor
    closed would lose its buffered tail). ``atexit._run_exitfuncs`` is CPython's own
    hook, the one ``sys.exit`` reaches at shutdown."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
