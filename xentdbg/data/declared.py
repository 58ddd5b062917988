"""What a setup declares about its data, next to its code, and how the command line and the
two sides' declarations settle into one :class:`~xentdbg.data.DataSpec`.

A setup function states what it trains on with the :func:`declare` decorator::

    @xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="sparse", batch_size=128)
    def setup(data):
        ...

The coordinator reads the decorator's arguments from the file's source
(:func:`xentdbg.replay.loading.declared_data`), without running it: it must know the data
before it starts the workers, and importing a setup imports its framework. So the values
must be literals. Precedence, per option: the command line, then the declarations (the
two sides must agree where both declare), then the built-in default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, get_args

from xentdbg.data import LAYOUT_SHAPES, Labels, Pixels, Task
from xentdbg.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

CHOICES: dict[str, tuple[str, ...]] = {"task": get_args(Task), "pixels": get_args(Pixels),
                                       "layout": tuple(LAYOUT_SHAPES), "labels": get_args(Labels)}
COUNTS = ("steps", "subset", "batch_size")
DECLARABLE = (*CHOICES, *COUNTS)
"""The options a setup may declare, as :func:`declare` keywords (``--batch-size`` is
``batch_size``)."""

DEFAULTS: dict[str, Any] = {"steps": 10, "subset": 1000, "task": "binary", "pixels": "raw", "layout": "flat",
                            "labels": "onehot", "batch_size": None}
"""Built-in defaults; ``batch_size`` None means the whole subset (one batch per step)."""


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_declared(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked as a declaration: known keys, allowed choices, positive integers.
    Raises :class:`UsageError` naming ``where`` (the setup) and the key."""
    out = {}
    for key, value in values.items():
        if key not in DECLARABLE:
            raise UsageError(f"{where} declares {key}={value!r}: not a data option.",
                             hint=f"xentdbg.declare takes {', '.join(DECLARABLE)}.")
        if key in CHOICES and value not in CHOICES[key]:
            raise UsageError(f"{where} declares {key}={value!r}: choose one of {', '.join(CHOICES[key])}.")
        if key in COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"{where} declares {key}={value!r}: a positive integer is needed.")
        out[key] = value
    return out


def declare(**data: Any) -> Callable[[F], F]:
    """Declare the data a setup function trains on: ``task``, ``pixels``, ``layout``,
    ``labels``, ``batch_size``, ``steps``, ``subset`` (the ``compare``/``trace`` options of
    the same names). The command line overrides them; when both setups of a comparison
    declare an option, they must agree. Values must be literals: the coordinator reads
    them from the source without running the file. Returns the function unchanged, with
    the checked declaration in its ``__xentdbg_data__`` attribute."""
    checked = check_declared(data, "xentdbg.declare")

    def mark(function: F) -> F:
        function.__xentdbg_data__ = checked  # type: ignore[attr-defined]
        return function

    return mark


def resolve(given: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each option of :data:`DECLARABLE`: ``given`` (the command line; None: not given),
    else the declarations ``{side label: values}`` (which must agree), else :data:`DEFAULTS`.
    Raises :class:`UsageError` naming both values when two sides declare different ones."""
    out = {}
    for key in DECLARABLE:
        if given.get(key) is not None:
            out[key] = given[key]
            continue
        said = {side: values[key] for side, values in declared.items() if key in values}
        if len(set(map(repr, said.values()))) > 1:
            both = ", ".join(f"{side} declares {key}={value!r}" for side, value in said.items())
            raise UsageError(f"The setups declare different data: {both}.",
                             hint=f"Pass {flag(key)} to use one value for both sides (the command line overrides "
                                  "declarations), or make the declarations agree.")
        out[key] = next(iter(said.values())) if said else DEFAULTS[key]
    return out
