"""How every report writes a number: six significant digits, ``nan``/``inf`` spelled out,
``-`` for a value that was not measured."""

from __future__ import annotations

import math


def fmt_number(x: float | int | None) -> str:
    """``x`` with 6 significant digits (integers as they are); ``-`` for None."""
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, int):
        return str(x)
    return f"{x:.6g}"


def fmt_cosine(cosine: float | None, digits: int = 6) -> str:
    """A cosine similarity; ``n/a`` when there was nothing finite on both sides to compare."""
    return "n/a" if cosine is None else f"{cosine:.{digits}f}"


def fmt_difference(value: float | None, finite_pairs: int, nonfinite_mismatch: int) -> str:
    """A max difference; ``n/a`` when no element is finite on both sides (never 0 for NaN
    against a number)."""
    if finite_pairs == 0 and nonfinite_mismatch:
        return "n/a"
    return fmt_number(value)


def coverage(finite_pairs: int, size: int) -> str:
    """Which elements the differences cover, when some are non-finite on a side."""
    if finite_pairs == 0:
        return f"none of {size:,} elements is finite on both sides"
    return f"the {finite_pairs:,} of {size:,} elements finite on both sides"
