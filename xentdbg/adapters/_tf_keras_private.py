"""Every tf_keras (Keras 2) internal xentdbg relies on, in one place.

The legacy adapter (``legacy_function``) imports nothing from ``tf_keras.src`` and reads
no private attribute of a tf_keras object except through the functions below, each
citing the installed source it was written against (tf_keras 2.21.0, paths relative
to ``site-packages``).

Checks: the installed tf_keras version against :data:`TF_KERAS` once, on first use;
each accessor checks that its internal exists. Failures raise
:class:`xentdbg.errors.UnsupportedLibrary`. tf_keras is imported inside the accessors
only (the legacy adapter has imported it already).
"""

from __future__ import annotations

from typing import Any

from xentdbg.adapters._library_guard import VersionRange, checked_version, missing_internal

TF_KERAS = VersionRange("tf_keras", (2, 18), (2, 22))
"""The tf_keras versions this module was written and tested for (pyproject.toml's
``legacy`` extra pins the same)."""


def tf_keras_version() -> str:
    """The installed tf_keras version, checked against :data:`TF_KERAS` on the first call."""
    return checked_version(TF_KERAS)


def symbolic_learning_phase() -> Any:
    """The graph's learning-phase tensor that ``K.function`` feeds: a
    ``placeholder_with_default(False)`` created on first use in the current graph."""
    # tf_keras/src/backend.py:384  symbolic_learning_phase(), not exported by tf_keras.backend.
    # The public learning_phase() (tf_keras/src/backend.py:325) wraps it in tf.init_scope and
    # marks function graphs unsaveable; the adapter was written and measured with this one.
    version = tf_keras_version()
    where = "tf_keras/src/backend.py:384"
    try:
        from tf_keras.src import backend
    except ImportError:
        raise missing_internal(TF_KERAS, version, "the module tf_keras.src.backend", where) from None
    function = getattr(backend, "symbolic_learning_phase", None)
    if not callable(function):
        raise missing_internal(TF_KERAS, version, "tf_keras.src.backend.symbolic_learning_phase", where)
    return function()
