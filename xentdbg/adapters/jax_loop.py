"""Adapter for :class:`xentdbg.JaxLoop`: a jitted JAX training step written by xentdbg.

Behaviour it reproduces:
- ``optax``: ``updates, s = opt.update(grads, s, params); params = optax.apply_updates(params, updates)``.
- ``jax.example_libraries.optimizers``: ``s = update_fun(i, grads, s); params = get_params(s)``.

The captured and the plain run call the *same* jitted step (it returns loss and
gradients in both), so capture cannot change the trajectory. Per-layer activations
come from a separate, pure forward pass through ``layers`` at the pre-step
parameters, which touches no state.

Cross-feed (:meth:`JaxLoopAdapter.evaluate`): the adapter keeps, for the last two
steps, the batch, the pre-step state and the pre-step optimizer state (references to
immutable JAX arrays: nothing is copied), and re-runs the same jitted step from given
parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xentdbg.adapters.base import Adapter, Emit, given_batch, python_info
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import JaxLoop


def path_names(tree: Any) -> list[str]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in leaves]


def stax_layer_name(index: int, layer: tuple) -> str:
    """``layers[i]:Kind``. stax layers are closures (``Dense.<locals>.init_fun``);
    ``stax.Relu`` is ``elementwise(relu)``, named after the function it wraps."""
    init_fun, apply_fun = layer
    kind = getattr(init_fun, "__qualname__", "").split(".<locals>")[0] or type(init_fun).__name__
    if kind == "elementwise":
        cells = [c.cell_contents for c in (apply_fun.__closure__ or ())]
        kind = next((getattr(c, "__name__", kind) for c in cells if callable(c)), kind)
    return f"layers[{index}]:{kind}"


def xy_form(fn: Any, leading: int) -> Any:
    """``fn`` in the form xentdbg calls it: ``fn(*first, x, y)`` with ``leading`` arguments
    before the batch (a loss: ``params``, or ``params, state``; a user's step: ``state``,
    or ``i, state``). A function written ``fn(*first, batch)`` with ``batch = (x, y)``,
    as many public examples write it, is wrapped; the wrapper only builds the tuple, so
    the traced computation is the user's own. The form is read from the number of
    positional parameters (``leading + 1`` is the batch form); a signature that cannot
    be read, or one with ``*args``, keeps the ``(..., x, y)`` form."""
    import inspect

    try:
        sig = inspect.signature(fn)  # follows __wrapped__, so jax.jit-wrapped functions read too
    except (TypeError, ValueError):
        return fn
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in sig.parameters.values() if p.kind in kinds]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return fn
    if len(positional) != leading + 1:
        return fn
    return lambda *args: fn(*args[:-2], (args[-2], args[-1]))


def as_float64(a: Any) -> Any:
    """A float array as a float64 JAX array (the worker runs with ``JAX_ENABLE_X64``);
    other dtypes unchanged."""
    a = np.asarray(a)
    return jnp.asarray(a, dtype=jnp.float64) if a.dtype.kind == "f" else jnp.asarray(a)


def with_leaves(like: Any, values: Any, cast: Any = None) -> Any:
    """The pytree ``like`` with its leaves replaced by ``values`` (in leaf order), each
    cast to its old leaf's dtype, or put through ``cast`` when given."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    new = [cast(v) if cast is not None else jnp.asarray(v, dtype=jnp.asarray(old).dtype)
           for old, v in zip(leaves, values, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, new)


def stax_layers(layers: Any) -> list[tuple[Any, Any]]:
    """The layers of ``layers``: a list of stax ``(init_fun, apply_fun)`` pairs as given, or
    the pair ``stax.serial(...)`` returned, opened into its layers. ``serial`` keeps them
    in its closures, ``init_funs`` and ``apply_funs``
    (jax/example_libraries/stax.py:294-309, JAX 0.10), so ``layers=(init, predict)`` with
    the pair a model was built from needs no hand-written list."""
    if isinstance(layers, tuple) and len(layers) == 2 and all(callable(f) for f in layers):
        init_fun, apply_fun = layers
        cells = {name: cell.cell_contents for f in layers
                 for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ())}
        if getattr(apply_fun, "__qualname__", "").startswith("serial.") and {"init_funs", "apply_funs"} <= set(cells):
            return list(zip(cells["init_funs"], cells["apply_funs"], strict=True))
        return [(init_fun, apply_fun)]
    return list(layers)


def stax_forward(layers: Any, jit: bool = True) -> Any:
    """``forward(params, x) -> [output of each layer]`` for stax ``layers`` (the
    ``(init_fun, apply_fun)`` pairs given to ``stax.serial``; ``params[i]`` feeds layer i):
    a pure forward pass at given parameters, which touches no state."""
    applies = [apply for _, apply in stax_layers(layers)]

    def forward(params, x):
        outs = []
        for p, apply in zip(params, applies):
            x = apply(p, x)
            outs.append(x)
        return outs

    return jax.jit(forward) if jit else forward


class _Optimizer:
    """Uniform face over optax and ``jax.example_libraries.optimizers``."""

    def __init__(self, opt: Any):
        if hasattr(opt, "init") and hasattr(opt, "update"):
            import optax

            self.init = opt.init

            def step(i, grads, opt_state, params):
                updates, opt_state = opt.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state

            def with_params(opt_state, params):
                return opt_state  # optax keeps no parameters in its state

        elif isinstance(opt, tuple) and len(opt) == 3 and all(callable(f) for f in opt):
            init_fun, update_fun, get_params = opt
            self.init = init_fun

            def step(i, grads, opt_state, params):
                opt_state = update_fun(i, grads, opt_state)
                return get_params(opt_state), opt_state

            def with_params(opt_state, params):
                """The state with ``params`` packed in place of its own: update_fun reads the
                parameters from the state, not from ``params``. OptimizerState packs per
                parameter the flat leaves of ``init_fun(x0)``, ``x0`` first for every
                optimizer of jax/example_libraries/optimizers.py (``tree_init``, :181-185, JAX 0.10;
                ``get_params`` returns that leaf), checked here by identity."""
                packed = opt_state.packed_state
                own = jax.tree_util.tree_leaves(get_params(opt_state))
                if len(own) != len(packed) or any(x is not leaves[0] for x, leaves in zip(own, packed)):
                    raise ValueError("this optimizer does not keep the parameters first in its state")
                flat = jax.tree_util.tree_leaves(params)
                return type(opt_state)([[p, *leaves[1:]] for p, leaves in zip(flat, packed, strict=True)],
                                       opt_state.tree_def, opt_state.subtree_defs)

        else:
            raise UsageError(
                f"JaxLoop optimizer is a {type(opt).__name__}.",
                hint="Pass an optax.GradientTransformation or the (init, update, get_params) "
                     "triple from jax.example_libraries.optimizers.")
        self.step = step
        self.with_params = with_params


class JaxLoopAdapter(Adapter):
    """Runs :class:`xentdbg.JaxLoop`; see the module docstring."""

    PROBE_PHASES = ("loss", "gradients", "activations", "state", "weights")
    ORACLE_PHASES = ("loss", "gradients", "state")

    def __init__(self, setup: JaxLoop, data: DataInfo):
        self.setup, self.data = setup, data
        self.params = setup.params
        self.state = setup.state
        self.optimizer = _Optimizer(setup.optimizer)
        self._loss = xy_form(setup.loss_fn, 2 if setup.state is not None else 1)
        self._param_names = path_names(self.params)
        self._state_names = path_names(self.state) if self.state is not None else []
        self._step_fn = self._make_step()
        self._forward = self._make_forward() if setup.layers is not None else None
        self._held: dict[int, tuple] = {}  # step -> (x, y, state, opt_state) before it: the last two steps
        self._apply: Any = None  # jitted optimizer step on given gradients, made on first use
        self._grad_fn: Any = None  # the float64 oracle's value_and_grad, made on first use

    # -- description -------------------------------------------------------
    def describe(self) -> SideInfo:
        params, state = self.initial_values()
        fw = {"jax": jax.__version__, "backend": jax.default_backend(), **python_info()}
        try:
            import optax

            fw["optax"] = optax.__version__
        except ImportError:
            pass
        return SideInfo(
            kind="JaxLoop", framework=fw,
            params=[TensorSpec.of(n, a) for n, a in zip(self._param_names, params)],
            state=[TensorSpec.of(n, a) for n, a in zip(self._state_names, state)],
            layers=self._layer_names(),
        )

    def initial_values(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        params = [np.asarray(a) for a in jax.tree_util.tree_leaves(self.params)]
        state = [np.asarray(a) for a in jax.tree_util.tree_leaves(self.state)] if self.state is not None else []
        return params, state

    def set_initial_values(self, params, state) -> None:
        if params is not None:
            self.params = with_leaves(self.params, params)
        if state is not None and self.state is not None:
            self.state = with_leaves(self.state, state)

    # -- training ----------------------------------------------------------
    def _make_step(self):
        loss_fn, opt_step, stateful = self._loss, self.optimizer.step, self.state is not None

        def step(i, params, state, opt_state, x, y):
            if stateful:
                (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
            else:
                loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
                new_state = state
            new_params, opt_state = opt_step(i, grads, opt_state, params)
            return loss, grads, new_params, new_state, opt_state

        return jax.jit(step) if self.setup.jit else step

    def _make_forward(self):
        assert self.setup.layers is not None  # called only for setups that give their layers
        return stax_forward(self.setup.layers, self.setup.jit)

    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        capture = CaptureMode(capture)
        spec = self.data.spec
        opt_state = self.optimizer.init(self.params)
        params, state = self.params, self.state
        for i in range(steps):
            sl = spec.batch_slice(i)
            x, y = self.data.x[sl], self.data.y[sl]
            acts = (self._forward(params, x)
                    if emit is not None and self._forward and capture is CaptureMode.FULL else None)
            if emit is not None and capture is CaptureMode.FULL:
                self._held[i] = (x, y, state, opt_state)
                self._held.pop(i - 2, None)
            loss, grads, new_params, state, opt_state = self._step_fn(i, params, state, opt_state, x, y)
            params = new_params
            if emit is None:
                continue
            inputs, digests = batch_fingerprint(x, y)
            tensors = {
                "inputs": inputs,
                "activations": [(n, np.asarray(a)) for n, a in zip(self._layer_names(), acts or [])],
                "loss": [("loss", np.asarray(loss))],
                "gradients": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(grads)))),
                "state": (list(zip(self._state_names, map(np.asarray, jax.tree_util.tree_leaves(state))))
                          if state is not None else []),
                "weights": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(params)))),
            }
            emit(StepRecord(step=i, tensors=tensors, digests=digests))
        self.params, self.state = params, state

    def evaluate(self, step, params, state, grads=None, optimizer=None, batch=None):
        """Step ``step`` re-run by the same jitted step function from ``params`` (and
        ``state``) with the optimizer state held from before that step (or ``optimizer``,
        leaves in :meth:`held_optimizer` order), on its batch or ``batch``; with ``grads``,
        the optimizer step is applied to them instead (see :meth:`Adapter.evaluate`)."""
        if step not in self._held:
            raise ValueError(f"step {step} is no longer held (steps held: {sorted(self._held)})")
        x, y, own_state, opt_state = self._held[step]
        if batch is not None:
            x, y = given_batch(batch, x, y)

        p = with_leaves(self.params, params)
        s = with_leaves(own_state, state) if state is not None and own_state is not None else own_state
        if optimizer is not None:
            opt_state = with_leaves(opt_state, optimizer)
        opt_state = self.optimizer.with_params(opt_state, p)
        loss, g, new_params, new_state, _ = self._step_fn(step, p, s, opt_state, x, y)
        if grads is not None:
            if self._apply is None:
                opt_step = self.optimizer.step
                self._apply = jax.jit(lambda i, gr, o, pr: opt_step(i, gr, o, pr)[0]) if self.setup.jit else (
                    lambda i, gr, o, pr: opt_step(i, gr, o, pr)[0])
            new_params = self._apply(step, with_leaves(g, grads), opt_state, p)
        out = {
            "loss": [("loss", np.asarray(loss))],
            "gradients": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(g)))),
            "weights": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(new_params)))),
        }
        if new_state is not None:
            out["state"] = list(zip(self._state_names, map(np.asarray, jax.tree_util.tree_leaves(new_state))))
        if self._forward is not None:
            out["activations"] = [(n, np.asarray(a)) for n, a in zip(self._layer_names(), self._forward(p, x))]
        return out

    def held_optimizer(self, step: int) -> list[np.ndarray]:
        """The leaves of the optimizer state held from before step ``step``."""
        if step not in self._held:
            raise ValueError(f"step {step} is no longer held (steps held: {sorted(self._held)})")
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(self._held[step][3])]

    def held_batch(self, step: int) -> list[np.ndarray]:
        if step not in self._held:
            raise ValueError(f"step {step} is no longer held (steps held: {sorted(self._held)})")
        x, y = self._held[step][:2]
        return [np.asarray(x), np.asarray(y)]

    def oracle(self, params, state, batch):
        """``value_and_grad`` of the setup's loss in float64 (see :meth:`Adapter.oracle`):
        the worker runs with ``JAX_ENABLE_X64``, so arrays cast to float64 stay float64
        unless the loss casts them back, which the returned dtypes show."""
        if not jax.config.read("jax_enable_x64"):
            raise ValueError("JAX x64 is off in this worker")

        stateful = self.state is not None
        if self._grad_fn is None:
            fn = jax.value_and_grad(self._loss, has_aux=stateful)
            self._grad_fn = jax.jit(fn) if self.setup.jit else fn
        p = with_leaves(self.params, params, as_float64)
        x, y = as_float64(batch[0]), as_float64(batch[1])
        out: dict[str, list[tuple[str, np.ndarray]]] = {}
        if stateful:
            s = (with_leaves(self.state, state, as_float64) if state is not None
                 else jax.tree_util.tree_map(as_float64, self.state))
            (loss, new_state), g = self._grad_fn(p, s, x, y)
            out["state"] = list(zip(self._state_names, map(np.asarray, jax.tree_util.tree_leaves(new_state))))
        else:
            loss, g = self._grad_fn(p, x, y)
        out["loss"] = [("loss", np.asarray(loss))]
        out["gradients"] = list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(g))))
        return out

    def _layer_names(self) -> list[str]:
        return [stax_layer_name(i, layer) for i, layer in enumerate(stax_layers(self.setup.layers or []))]

    def final_weights(self) -> list[np.ndarray]:
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(self.params)]
