"""How numbers and indices read in the texts of ``xentdbg loss``'s findings. Pure text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, SupportsIndex

import numpy as np

Real = float | np.floating[Any] | np.integer[Any]  # a number as numpy hands it over


def trim(text: str) -> str:
    """``"2.0"`` -> ``"2"``."""
    return text[:-2] if text.endswith(".0") else text


def f32(x: Real) -> str:
    """Shortest text that reads back as the same float32 (``1.1920929e-07``); ``0.0`` -> ``0``."""
    return trim(str(np.float32(x)))


def f64(x: Real) -> str:
    """Shortest text that reads back as the same float64."""
    return trim(str(np.float64(x)))


def g(x: Real) -> str:
    """Six significant digits, ``%g`` style: ``0.001``, ``1e-09``."""
    return trim(f"{float(x):g}")


def bound(x: Real) -> str:
    """A clip bound with enough digits to tell 0.99999988 from 1 − 1e-07."""
    return f"{float(x):.8g}"


def vec(a: np.ndarray, limit: int = 6) -> str:
    """The first ``limit`` values as ``[a, b, …]``: float32 as :func:`f32`, others with 9 digits."""
    a = np.asarray(a)
    flat = [f32(v) if a.dtype == np.float32 else trim(f"{float(v):.9g}") for v in a.ravel()[:limit]]
    return "[" + ", ".join(flat) + (", …" if a.size > limit else "") + "]"


def cap(lines: list[str], limit: int = 8) -> list[str]:
    """At most ``limit`` lines, then one that counts the rest."""
    return lines if len(lines) <= limit else lines[:limit] + [f"… and {len(lines) - limit} more"]


def element(idx: Iterable[SupportsIndex]) -> str:
    """``y_pred[0, 1]``."""
    return f"y_pred[{', '.join(str(int(i)) for i in idx)}]"


def sample(i: SupportsIndex, shape: tuple[int, ...]) -> str:
    """Flat sample index ``i`` as written for the per-sample shape: ``3``, or ``(1, 0)`` in 2-D."""
    if len(shape) <= 1:
        return str(int(i))
    return "(" + ", ".join(str(int(k)) for k in np.unravel_index(int(i), shape)) + ")"


def names(results: Mapping[str, Any], keys: Iterable[str]) -> str:
    """The ``label`` of each of ``keys`` in ``results`` (key -> result row), comma-separated."""
    return ", ".join(results[k].label for k in keys)
