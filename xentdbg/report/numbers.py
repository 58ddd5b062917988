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
