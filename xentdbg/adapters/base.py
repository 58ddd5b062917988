"""The interface every framework adapter implements, and the step-emission contract."""

from __future__ import annotations

import platform
from typing import Callable, Protocol

import numpy as np

from xentdbg.records import SideInfo, StepRecord

Emit = Callable[[StepRecord], None]
"""Hands one step's record to the coordinator and blocks until it says go on.

Raises :class:`StopReplay` when the coordinator wants no more steps."""


class StopReplay(Exception):
    """Raised by ``emit`` to end training early; adapters let it propagate."""


class Adapter(Protocol):
    def describe(self) -> SideInfo:
        """Kind, framework versions, parameter and state tables."""

    def initial_values(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Parameters and non-trainable state before the first step, in table order."""

    def set_initial_values(self, params: list[np.ndarray] | None, state: list[np.ndarray] | None) -> None:
        """Overwrite the initial parameters (and state, when given) in table order."""

    def train(self, steps: int, emit: Emit | None, light: bool = False) -> None:
        """Run ``steps`` training steps. With ``emit=None`` nothing is captured:
        this is the plain training that capture must not change.

        ``light``: capture only what the step yields at little cost (inputs, training
        flags, loss, state, weights, and gradients where the step returns them anyway),
        for the first pass of ``compare --fingerprint``."""


def python_info() -> dict[str, str]:
    """Python, platform and the devices of whichever frameworks this worker imported."""
    return {"python": platform.python_version(), "platform": platform.platform(terse=True), "devices": _devices()}


def _devices() -> str:
    import sys

    found = []
    if "jax" in sys.modules:
        found += [f"jax:{d.platform}:{d.id}" for d in sys.modules["jax"].devices()]
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        found += [f"tf:{d.name}" for d in tf.config.list_logical_devices()]
    return ", ".join(found)
