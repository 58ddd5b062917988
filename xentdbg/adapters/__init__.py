"""Framework adapters: one module per setup kind, imported only when that kind is used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.setups import JaxLoop, JaxStep, KerasFit, KerasLoop, LegacyKerasFunction, NnxStep

if TYPE_CHECKING:
    from xentdbg.adapters.base import Adapter


def make_adapter(setup: object, data: DataInfo) -> Adapter:
    """The adapter that runs ``setup`` (a value returned by a setup function)."""
    if isinstance(setup, KerasFit):
        from xentdbg.adapters.keras_fit import KerasFitAdapter

        return KerasFitAdapter(setup, data)
    if isinstance(setup, KerasLoop):
        from xentdbg.adapters.keras_loop import KerasLoopAdapter

        return KerasLoopAdapter(setup, data)
    if isinstance(setup, LegacyKerasFunction):
        from xentdbg.adapters.legacy_function import LegacyFunctionAdapter

        return LegacyFunctionAdapter(setup, data)
    if isinstance(setup, JaxLoop):
        from xentdbg.adapters.jax_loop import JaxLoopAdapter

        return JaxLoopAdapter(setup, data)
    if isinstance(setup, JaxStep):
        from xentdbg.adapters.jax_step import JaxStepAdapter

        return JaxStepAdapter(setup, data)
    if isinstance(setup, NnxStep):
        from xentdbg.adapters.flax_nnx import NnxStepAdapter

        return NnxStepAdapter(setup, data)
    raise UsageError(
        f"The setup function returned a {type(setup).__name__}.",
        hint="Return xentdbg.KerasFit(model, **fit_kwargs), xentdbg.KerasLoop(model, train_step, optimizer), "
             "xentdbg.LegacyKerasFunction(model, function, feed), xentdbg.JaxLoop(params, loss_fn, optimizer) "
             "xentdbg.JaxStep(step, state, loss_fn) or xentdbg.NnxStep(model, optimizer, step, loss_fn).")
