"""Adapter for :class:`xentdbg.NnxStep`: a Flax NNX model and ``nnx.Optimizer`` trained by
the user's own step, run unchanged.

Each step, with capture::

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)        # pure arrays (nnx.as_pure)
    loss, grads = value_and_grad(lambda p: loss_fn(nnx.merge(graphdef, p, rest), x, y))(params)
    step(model, optimizer, x, y)                                      # the user's step, in place

The capture function runs on a model merged from the pre-step arrays inside xentdbg's
own ``jax.jit``: what it mutates (BatchNorm statistics, RNG counters) belongs to that
copy, so the user's model and optimizer see exactly what they would without xentdbg
(``tests/adapters/test_flax.py`` checks the final bits). NNX variables created outside
a trace cannot be mutated inside one (``flax.errors.TraceContextError``), hence
``nnx.as_pure`` before the jit, as ``nnx.Optimizer.update`` itself does
(``flax/nnx/training/optimizer.py:222-225``, flax 0.12.8).

Recorded: the ``nnx.Param`` leaves as parameters (gradients, weights), the
``nnx.BatchStat`` leaves as state, and, where ``nnx.capture`` exists (flax 0.12), each
module's ``__call__`` output as activations, from a separate forward pass on a copy.

Cross-feed (:meth:`NnxStepAdapter.evaluate`): the adapter holds, for the last two steps,
the batch and a copy of the pre-step arrays of model and optimizer, and re-runs the
user's step on a model and optimizer merged from them. Given gradients cannot be applied
through a user's step, so that re-run leaves ``weights`` out.

Only public ``flax.nnx`` functions are used; the flax version is checked against
:data:`FLAX` on first use.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xentdbg.adapters._library_guard import VersionRange, checked_version
from xentdbg.adapters.base import Adapter, Emit, given_batch, python_info
from xentdbg.adapters.jax_loop import with_leaves, xy_form
from xentdbg.data import DataInfo
from xentdbg.records import CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import NnxStep

FLAX = VersionRange("flax", (0, 11), (0, 13))
"""The flax versions this adapter was written and tested for (``nnx.Optimizer.update(model,
grads)`` since 0.11; pyproject.toml's ``flax`` extra pins the same)."""


def _names(state: Any) -> list[str]:
    """``['layer']['kernel']`` for each leaf of an NNX state (the ``.value`` of the
    Variable left off)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    return [jax.tree_util.keystr(path).removesuffix(".value") for path, _ in leaves]


def _keys(path: tuple) -> list:
    """The plain keys of a JAX key path (dict keys, attribute names, sequence indices)."""
    return [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path]


def _module_of(path: tuple) -> tuple:
    """The module path of a captured output's key path ``(..., module, '__call__', i)``."""
    keys = list(path)
    return tuple(str(k) for k in keys[:keys.index("__call__")]) if "__call__" in keys else tuple(map(str, keys))


def _definition_order(model: Any) -> dict[tuple, tuple]:
    """Each submodule's path, ranked depth-first in the order its attributes were assigned
    (``vars()`` keeps assignment order). NNX flattens modules with their attributes sorted,
    so the captured outputs come sorted by name; for a model that calls its layers in the
    order ``__init__`` creates them (a Sequential-like model) this ranks them in call order,
    and the model's own output last. Activations only localize a divergence, so a model
    that calls them in another order loses only the order of its activation rows."""
    from flax import nnx

    rank: dict[tuple, tuple] = {}

    def walk(module: Any, path: tuple, at: tuple) -> None:
        children = [(k, v) for k, v in vars(module).items() if isinstance(v, nnx.Module)]
        for i, (key, child) in enumerate(children):
            walk(child, (*path, key), (*at, i))
        rank[path] = (*at, len(children))  # after its children: a container's output comes last

    walk(model, (), ())
    return rank


def _loss_only(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


class NnxStepAdapter(Adapter):
    """Runs :class:`xentdbg.NnxStep`; see the module docstring."""

    PROBE_PHASES = ("loss", "gradients", "activations", "state", "weights")

    def __init__(self, setup: NnxStep, data: DataInfo):
        checked_version(FLAX)
        from flax import nnx

        self.nnx, self.setup, self.data = nnx, setup, data
        self.model, self.optimizer = setup.model, setup.optimizer
        self._loss = xy_form(setup.loss_fn, 1)
        self._step = xy_form(setup.step, 2)
        self._param_names = _names(nnx.state(self.model, nnx.Param))
        self._state_names = _names(nnx.state(self.model, nnx.BatchStat))
        graphdef = nnx.graphdef(self.model)
        loss = self._loss

        def value_and_grad(params, rest, x, y):
            return jax.value_and_grad(lambda p: _loss_only(loss(nnx.merge(graphdef, p, rest), x, y)))(params)

        self._grad_fn = jax.jit(value_and_grad)
        self._loss_fn = jax.jit(lambda params, rest, x, y: _loss_only(loss(nnx.merge(graphdef, params, rest), x, y)))
        self._forward, self._layers = self._make_forward(graphdef, data.x[:1])
        self._held: dict[int, tuple] = {}  # step -> (x, y, graphdef, pure arrays of (model, optimizer))

    # -- reading and writing the model ------------------------------------------
    def _split(self, model: Any) -> tuple[Any, Any]:
        _, params, *rest = self.nnx.split(model, self.nnx.Param, ...)
        return self.nnx.as_pure(params), self.nnx.as_pure(rest[0])

    def _leaves(self, model: Any, kind: Any) -> list[np.ndarray]:
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(self.nnx.as_pure(self.nnx.state(model, kind)))]

    def _set(self, node: Any, kind: Any, values: list[np.ndarray]) -> None:
        """``node``'s variables of ``kind`` (all of them for ``...``) set to ``values`` in leaf
        order, each cast to its old dtype."""
        self.nnx.update(node, with_leaves(self.nnx.as_pure(self.nnx.state(node, kind)), values))

    def _make_forward(self, graphdef: Any, sample: np.ndarray) -> tuple[Any, list[str]]:
        """A jitted ``forward(params, rest, x) -> [module outputs]`` and their names, through
        ``nnx.capture(..., method_outputs=nnx.Intermediate)`` (flax/nnx/module.py:789,
        flax 0.12.8) on a merged copy; ``(None, [])`` where it is missing or fails."""
        nnx = self.nnx
        capture = getattr(nnx, "capture", None)
        if capture is None:
            return None, []

        def run(params, rest, x):
            model = nnx.merge(graphdef, params, rest)
            _, found = capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
            return nnx.as_pure(found)

        try:
            params, rest = self._split(self.model)
            shapes = jax.eval_shape(run, params, rest, sample)
        except Exception:  # noqa: BLE001 - activations only localize; a model they break runs without them
            return None, []
        paths = [tuple(_keys(path)) for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]
        rank = _definition_order(self.model)
        order = sorted(range(len(paths)), key=lambda i: rank.get(_module_of(paths[i]), (len(rank),)))
        root = type(self.model).__name__

        def name(path: tuple) -> str:
            module, call = _module_of(path), path[-1]
            base = "/".join(module) or root
            return base if call in (0, "0") else f"{base}[{call}]"

        def forward(params, rest, x):
            leaves = jax.tree_util.tree_leaves(run(params, rest, x))
            return [leaves[i] for i in order]

        return jax.jit(forward), [name(paths[i]) for i in order]

    # -- description ----------------------------------------------------------
    def describe(self) -> SideInfo:
        params, state = self.initial_values()
        fw = {"jax": jax.__version__, "flax": checked_version(FLAX), "backend": jax.default_backend(),
              **python_info()}
        return SideInfo(kind="NnxStep", framework=fw,
                        params=[TensorSpec.of(n, a) for n, a in zip(self._param_names, params)],
                        state=[TensorSpec.of(n, a) for n, a in zip(self._state_names, state)],
                        layers=list(self._layers))

    def initial_values(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return self._leaves(self.model, self.nnx.Param), self._leaves(self.model, self.nnx.BatchStat)

    def set_initial_values(self, params, state) -> None:
        if params is not None:
            self._set(self.model, self.nnx.Param, params)
        if state is not None and self._state_names:
            self._set(self.model, self.nnx.BatchStat, state)

    def final_weights(self) -> list[np.ndarray]:
        return self._leaves(self.model, self.nnx.Param)

    # -- training -------------------------------------------------------------
    def _capture(self, model: Any, x: Any, y: Any, full: bool) -> tuple[Any, Any, list]:
        params, rest = self._split(model)
        if not full:
            return self._loss_fn(params, rest, x, y), None, []
        loss, grads = self._grad_fn(params, rest, x, y)
        acts = self._forward(params, rest, x) if self._forward is not None else []
        return loss, grads, acts

    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        capture = CaptureMode(capture)
        spec, nnx = self.data.spec, self.nnx
        for i in range(steps):
            sl = spec.batch_slice(i)
            x, y = self.data.x[sl], self.data.y[sl]
            if emit is not None:
                full = capture is CaptureMode.FULL
                loss, grads, acts = self._capture(self.model, x, y, full)
                if full:
                    graphdef, arrays = nnx.split((self.model, self.optimizer))
                    self._held[i] = (x, y, graphdef, jax.tree_util.tree_map(jnp.copy, nnx.as_pure(arrays)))
                    self._held.pop(i - 2, None)
            self._step(self.model, self.optimizer, x, y)  # the user's step, unchanged
            if emit is None:
                continue
            inputs, digests = batch_fingerprint(x, y)
            tensors = {
                "inputs": inputs,
                "activations": [(n, np.asarray(a)) for n, a in zip(self._layers, acts)],
                "loss": [("loss", np.asarray(loss))],
                "gradients": (list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(grads))))
                              if grads is not None else []),
                "state": list(zip(self._state_names, self._leaves(self.model, nnx.BatchStat))),
                "weights": list(zip(self._param_names, self._leaves(self.model, nnx.Param))),
            }
            emit(StepRecord(step=i, tensors=tensors, digests=digests))

    # -- probes ---------------------------------------------------------------
    def _held_step(self, step: int) -> tuple:
        if step not in self._held:
            raise ValueError(f"step {step} is no longer held (steps held: {sorted(self._held)})")
        return self._held[step]

    def evaluate(self, step, params, state, grads=None, optimizer=None, batch=None):
        """Step ``step`` re-run by the user's step on a model and optimizer merged from the
        arrays held before it, with ``params`` (and ``state``, and the optimizer's leaves
        ``optimizer`` in :meth:`held_optimizer` order) in place, on its batch or ``batch``.
        With ``grads`` given, ``weights`` is left out (the user's step computes its own)."""
        nnx = self.nnx
        x, y, graphdef, arrays = self._held_step(step)
        if batch is not None:
            x, y = given_batch(batch, x, y)
        model, opt = nnx.merge(graphdef, arrays)
        self._set(model, nnx.Param, params)
        if state is not None and self._state_names:
            self._set(model, nnx.BatchStat, state)
        if optimizer is not None:
            self._set(opt, ..., optimizer)
        loss, g, acts = self._capture(model, x, y, True)
        out = {"loss": [("loss", np.asarray(loss))],
               "gradients": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(g))))}
        if self._forward is not None:
            out["activations"] = [(n, np.asarray(a)) for n, a in zip(self._layers, acts)]
        if grads is None:
            self._step(model, opt, x, y)
            out["weights"] = list(zip(self._param_names, self._leaves(model, nnx.Param)))
            if self._state_names:
                out["state"] = list(zip(self._state_names, self._leaves(model, nnx.BatchStat)))
        return out

    def held_optimizer(self, step: int) -> list[np.ndarray]:
        """The optimizer's arrays (step count, optax state) held from before step ``step``."""
        _, _, graphdef, arrays = self._held_step(step)
        _, opt = self.nnx.merge(graphdef, arrays)
        return self._leaves(opt, ...)

    def held_batch(self, step: int) -> list[np.ndarray]:
        x, y, _, _ = self._held_step(step)
        return [np.asarray(x), np.asarray(y)]
