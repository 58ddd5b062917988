"""The interface every framework adapter implements, and the step-emission contract."""

from __future__ import annotations

import abc
import platform
from collections.abc import Callable

import numpy as np

from xentdbg.records import CaptureMode, SideInfo, StepRecord

Emit = Callable[[StepRecord], None]
"""Hands one step's record to the coordinator and blocks until it says go on.

Raises :class:`StopReplay` when the coordinator wants no more steps."""


class StopReplay(Exception):
    """Raised by ``emit`` to end training early; adapters let it propagate."""


class Adapter(abc.ABC):
    """Runs one setup (a value a setup function returned) in a worker process.

    The worker (``xentdbg/replay/worker.py``) and ``xentdbg/replay/single.py`` call, in
    this order: :meth:`initial_values` and :meth:`describe` (any order), optionally
    :meth:`set_initial_values`, :meth:`train` once, then :meth:`final_weights`.
    Parameter and state lists are always in the order of :meth:`describe`'s tables.
    """

    PROBE_PHASES: tuple[str, ...] = ()
    """The phases :meth:`evaluate` returns (empty: no cross-feed probe)."""

    ORACLE_PHASES: tuple[str, ...] = ()
    """The phases :meth:`oracle` returns (empty: no float64 re-run)."""

    @abc.abstractmethod
    def describe(self) -> SideInfo:
        """Kind, framework versions, parameter and state tables, leaf layer names."""

    @abc.abstractmethod
    def initial_values(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Parameters and non-trainable state before the first step, in table order,
        as arrays that later training leaves unchanged."""

    @abc.abstractmethod
    def set_initial_values(self, params: list[np.ndarray] | None, state: list[np.ndarray] | None) -> None:
        """Overwrite the initial parameters (and state, when given) in table order;
        ``None`` leaves that part as the setup built it. Called before :meth:`train`."""

    @abc.abstractmethod
    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        """Run ``steps`` training steps, calling ``emit`` with each step's record.

        With ``emit=None`` nothing is captured: this is the plain training that capture
        must not change (a captured run ends bitwise where the plain run ends).
        ``capture`` says what each record holds (see :class:`CaptureMode`):
        ``CaptureMode.FULL`` every phase, activations and gradients included;
        ``CaptureMode.FINGERPRINT`` only what the step yields at little cost (inputs,
        training flags, loss, state, weights, and gradients where the step returns them
        anyway), for the first pass of ``compare --fingerprint``. It is ignored when
        ``emit`` is None. :class:`StopReplay` raised by ``emit`` propagates."""

    @abc.abstractmethod
    def final_weights(self) -> list[np.ndarray]:
        """Parameters after :meth:`train`, in table order."""

    def evaluate(self, step: int, params: list[np.ndarray], state: list[np.ndarray] | None,
                 grads: list[np.ndarray] | None = None, optimizer: list[np.ndarray] | None = None,
                 batch: list[np.ndarray] | None = None) -> dict[str, list[tuple[str, np.ndarray]]]:
        """The cross-feed probe: re-run step ``step``'s computation from given pre-step values.

        From ``params`` (and ``state`` when given, else the side's own state before the
        step), both in table order, on the batch step ``step`` trained on (or ``batch``,
        when given: ``[x, y]`` as the other side's :meth:`held_batch` returned them, for a
        step whose two sides trained on other samples; see :func:`given_batch`), compute
        what the step computes, without changing anything the training will use afterwards:

        - ``"loss"``: ``[("loss", scalar)]``;
        - ``"gradients"``: ``d loss / d params`` in table order, named as in the records;
        - ``"activations"``: the layer outputs, named as in the records (when captured);
        - ``"state"``: the non-trainable state after the step's forward pass (BatchNorm's
          moving statistics), when the adapter can compute it;
        - ``"weights"``: ``params`` after this side's optimizer applied ``grads`` (or, when
          ``grads`` is None, the gradients computed here) from the optimizer state it
          held before step ``step`` (or ``optimizer``, an optimizer state in the order of
          :meth:`held_optimizer`, when given), when the adapter can compute it.

        A phase the adapter cannot compute is left out (the coordinator then cannot
        cross-feed it, and says so). Randomness (dropout masks) is that of step
        ``step``. Called with full capture only, from inside ``emit`` or after
        :meth:`train` returned, for the step emitted last and the one before it (the
        coordinator compares step k while the worker already ran step k+1).

        Raises :class:`NotImplementedError` where the adapter has no probe."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-run a step from given values")

    def held_optimizer(self, step: int) -> list[np.ndarray]:
        """The optimizer state before step ``step`` (moments, step count; Keras's
        ``optimizer.variables``, optax's state leaves), for the cross-feed of updates: the
        other side re-runs its optimizer from it when the two states pair one to one.
        Held as for :meth:`evaluate`."""
        raise NotImplementedError(f"{type(self).__name__} does not hold its optimizer state")

    def held_batch(self, step: int) -> list[np.ndarray]:
        """The batch step ``step`` trained on, as the step received it (``[x, y]`` or
        ``[x, y, sample_weight]``), for the float64 oracle. Held as for :meth:`evaluate`."""
        raise NotImplementedError(f"{type(self).__name__} does not hold its batches")

    def oracle(self, params: list[np.ndarray], state: list[np.ndarray] | None,
               batch: list[np.ndarray]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """The float64 oracle (:mod:`xentdbg.compare.oracle`): one step's computation in
        float64, from ``params`` (and ``state``) on ``batch``, with no history.

        Called only in a worker started for it, where the setup function built its model
        with float64 enabled (JAX x64; Keras ``floatx`` float64). Returns the phases of
        :attr:`ORACLE_PHASES` (``"loss"``, ``"gradients"``, and ``"state"`` where the
        adapter computes it) as :meth:`evaluate` names them, in the dtype the computation
        actually used: the coordinator checks it is float64 and never guesses. Raises
        :class:`ValueError` when the step cannot be reproduced this way (it draws random
        numbers, say)."""
        raise NotImplementedError(f"{type(self).__name__} has no float64 re-run")


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


def given_batch(batch: list[np.ndarray], x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    """Another side's batch (``[x, y]``, or ``[x, y, sample_weight]``, from its
    :meth:`Adapter.held_batch`) as this side's step receives its own ``x``, ``y`` (numpy,
    TensorFlow or JAX arrays): the same per-sample shapes, cast to their dtypes.

    Raises :class:`ValueError` when the per-sample shapes differ or the batch carries
    sample weights other than 1 (the step re-run here takes none)."""
    out = []
    for given, own in zip(batch[:2], (x, y), strict=True):
        dtype = np.dtype(getattr(own.dtype, "as_numpy_dtype", own.dtype))  # type: ignore[attr-defined]
        shape = tuple(int(d) for d in own.shape)  # type: ignore[attr-defined]
        a = np.asarray(given)
        if a.shape[1:] != shape[1:]:
            raise ValueError(f"the other side's batch has samples of shape {a.shape[1:]}, this side's {shape[1:]}")
        out.append(a.astype(dtype, copy=False))
    if len(batch) > 2 and not np.all(np.asarray(batch[2]) == 1):
        raise ValueError("the other side's batch carries sample weights; this side's step takes none")
    return out[0], out[1]
