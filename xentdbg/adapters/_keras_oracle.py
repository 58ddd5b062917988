"""What a Keras model must be for the float64 oracle (:meth:`Adapter.oracle`), shared by
:mod:`~xentdbg.adapters.keras_fit` and :mod:`~xentdbg.adapters.keras_loop`."""

from __future__ import annotations

from typing import Any

from xentdbg.adapters._keras_flavour import Flavour


def check_float64_model(flavour: Flavour, model: Any, state_index: list[int]) -> None:
    """Raise ``ValueError`` unless the worker runs Keras with ``floatx`` float64 (the
    oracle's worker sets it before the setup builds its model) and the model holds no
    integer state beside ``state_index`` (its float non-trainable variables): integer
    state is a Dropout's seed state, and a float64 re-run cannot draw the masks the step
    drew."""
    if flavour.floatx() != "float64":
        raise ValueError(f"{flavour.label} floatx is {flavour.floatx()} in the float64 worker (the setup sets it)")
    nt = model.non_trainable_variables
    seeds = [flavour.name(v) for k, v in enumerate(nt) if k not in state_index]
    if seeds:
        raise ValueError(f"the model has integer state ({', '.join(seeds[:3])}; a Dropout's seed state, "
                         "say): a float64 re-run cannot draw the masks the step drew")
