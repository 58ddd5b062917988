"""Every tf_keras (Keras 2) internal xentdbg relies on, in one place.

The adapters that run tf_keras models (``legacy_function``; ``keras_fit`` and
``keras_loop`` through :mod:`._keras_flavour`) import nothing from ``tf_keras.src`` and
read no private attribute of a tf_keras object except through the functions below, each
citing the installed source it was written against (tf_keras 2.21.0, paths relative
to ``site-packages``).

Checks: the installed tf_keras version against :data:`TF_KERAS` once, on first use;
each accessor checks that its internal exists. Failures raise
:class:`xentdbg.errors.UnsupportedLibrary`. tf_keras is imported inside the accessors
only (the legacy adapter has imported it already).
"""

from __future__ import annotations

from typing import Any

from xentdbg.adapters._library_guard import VersionRange, checked_version, internal_attr, missing_internal

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


def _attr(obj: Any, name: str, internal: str, where: str) -> Any:
    """``obj.<name>``, after the version check; :class:`UnsupportedLibrary` when missing."""
    return internal_attr(TF_KERAS, obj, name, internal, where)


def flatten_layers(layer: Any, recursive: bool) -> list[Any]:
    """The sublayers of ``layer`` (itself excluded) in tracking order: all descendants when
    ``recursive``, else its direct children (as ``_keras_private.flatten_layers``)."""
    # tf_keras/src/engine/base_layer.py:3415  Layer._flatten_layers(recursive=True, include_self=True)
    method = _attr(layer, "_flatten_layers", "Layer._flatten_layers", "tf_keras/src/engine/base_layer.py:3415")
    return list(method(recursive=recursive, include_self=False))


def is_compiled(model: Any) -> bool:
    """Whether ``model.compile`` ran (tf_keras has no public ``compiled``)."""
    # tf_keras/src/engine/training.py:822  compile() sets self._is_compiled = True
    return bool(_attr(model, "_is_compiled", "Model._is_compiled", "tf_keras/src/engine/training.py:822"))


def legacy_stateful_random_layers(model: Any) -> list[str]:
    """Names of the layers that draw random numbers with TensorFlow's legacy stateful ops
    (tf_keras's default for Dropout and other ``BaseRandomLayer`` s).

    Such an op keeps its generator state inside the op's kernel, one per traced function,
    seeded from the global seed and the op's position among the graph's random ops
    (tensorflow/python/framework/random_seed.py ``get_seed``): no variable holds it, so
    nothing can set it back. A recompute in another function draws the step's masks only
    when a global seed is set and it runs once per step, its random ops in the step's
    order; the adapters check that on every step (the recomputed loss must equal the
    step's bitwise) instead of assuming it."""
    # tf_keras/src/engine/base_layer.py:3927  BaseRandomLayer._random_generator = backend.RandomGenerator(...)
    # tf_keras/src/backend.py:1934-1938  rng_type None -> RNG_LEGACY_STATEFUL unless
    # tf_keras.backend.experimental.enable_tf_random_generator() was called (:1821, :1873)
    tf_keras_version()
    names = []
    for layer in flatten_layers(model, recursive=True):
        generator = getattr(layer, "_random_generator", None)
        if generator is not None and getattr(generator, "_rng_type", None) == "legacy_stateful":
            names.append(layer.name)
    return names
