"""Adapter for :class:`xentdbg.JaxStep`: the user's own JAX training step, run unchanged.

Each step, with capture::

    params = params_of(state)                         # the pre-step parameters
    loss, grads = value_and_grad(loss_fn)(params, x, y)   # xentdbg's own jitted function
    state = step(state, x, y)                         # the user's step, as written
    model_state = model_state_of(state)               # with a model state: the step's result

With a model state (a Flax ``TrainState``'s ``batch_stats``), the loss is
``loss_fn(params, model_state, x, y) -> (loss, new_model_state)``, differentiated with
``has_aux``; the record's ``state`` phase is the model state the step returned.

The capture function is pure and reads immutable arrays, so the user's step sees the
same inputs with or without it: a captured run ends bitwise where the plain run ends
(``tests/adapters/test_jax_step.py``). The step's own outputs (its loss, metrics) are
not read; what is recorded is the loss and gradients of ``loss_fn`` at the parameters
the step started from, the parameters after the step (``weights``) and, with ``layers``,
per-layer activations.

Per-layer activations come from the stax ``layers`` the setup lists or, for a Flax linen
``TrainState``, from linen's ``capture_intermediates`` (:func:`linen_forward`), in a
separate jitted forward pass at the pre-step parameters. A linen model that needs more
than its parameters (``batch_stats``, a ``train`` argument) is read through the setup's
own loss instead (:func:`linen_intercepted`), in its training mode.

Parameters live inside the user's state (a Flax ``TrainState``, an ``OptimizerState`` of
``jax.example_libraries.optimizers``, or the parameters themselves). xentdbg finds each
parameter leaf among the state's leaves by identity (``params(state)`` returns the
state's own arrays: attribute access, or ``get_params``, which unpacks ``x0`` from the
packed state, ``jax/example_libraries/optimizers.py:181-185``, JAX 0.10), and writes new
values into those positions to set the shared initial weights and to re-run a step from
the other side's weights. The other leaves are the optimizer state.

Cross-feed (:meth:`JaxStepAdapter.evaluate`): the adapter holds, for the last two
steps, the batch and a copy of the pre-step state (a copy, since a step jitted with
``donate_argnums`` may free its input buffers), and re-runs the user's step from given
parameters. Applying *given* gradients is not possible through a user's step, so that
re-run leaves ``weights`` out, and ``weights`` is not among the probed phases: updates
(``w_after - w_before`` at their own scale) are not compared against a ``JaxStep``; its
weights are, at the weights' scale. With a model state (:attr:`xentdbg.JaxStep.model_state`)
the re-run still runs the user's step for the ``state`` it sets in its forward pass.

Data-parallel steps (:attr:`xentdbg.JaxStep.mesh`): each global batch ``x``, ``y`` is
placed sharded along the batch axis, ``device_put(a, NamedSharding(mesh, P(axis)))``
(:mod:`xentdbg.adapters._jax_sharding`: replica ``r`` holds the ``r``-th contiguous slice,
checked on the first batch), and the user's step runs on the placed arrays as written.
What is recorded, and where it comes from::

    gradients, loss      grads_fn(state, x_sharded, y_sharded)   observed: the user's own
                         sharded function, whose output the step applies
                         (else value_and_grad(loss_fn) on the global batch: recomputed,
                         what a correct data-parallel step applies up to summation order)
    replicas[r]          inputs: per-sample sums of replica r's slice
                         loss, gradients: value_and_grad(loss_fn) on that slice at the
                         pre-step parameters, in shard_map over the mesh (recomputed:
                         what a data-parallel step computes locally before its pmean/psum)
                         state (with a model state, shard_map steps only): the model
                         state loss_fn returns on that slice (recomputed)
                         activations (shard_map steps, linen through the loss): each
                         replica's rows from its own slice, joined in replica order
    weights, state       the parameters and model state the step returned: observed

``SideInfo.framework`` gets ``replicas`` (the mesh's size along the batch axis),
``strategy`` (:func:`_jax_sharding.strategy`: ``shard_map`` when the step's traced
program holds one, else ``jit sharding``), ``mesh`` (axis sizes) and ``batch_axis``. The extra work is
pure functions of immutable arrays, so capture stays bitwise neutral
(``tests/adapters/test_jax_sharded.py``). The float64 oracle does not run when the
gradients come from ``grads_fn``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xentdbg.adapters import _jax_sharding as sharding
from xentdbg.adapters.base import Adapter, Emit, given_batch, python_info
from xentdbg.adapters.jax_loop import (
    as_float64,
    path_names,
    stax_forward,
    stax_layer_name,
    stax_layers,
    with_leaves,
    xy_form,
)
from xentdbg.data import DataInfo
from xentdbg.errors import UsageError
from xentdbg.records import REPLICA_PREFIX, CaptureMode, SideInfo, StepRecord, TensorSpec, batch_fingerprint
from xentdbg.setups import JaxStep


def param_positions(state: Any, params: Any, what: str = "params(state)") -> list[int]:
    """For each leaf of ``params`` (in leaf order), its position among the leaves of
    ``state``, found by identity. Raises :class:`UsageError` when a parameter is not a
    leaf of the state, or is one several times (a state that holds the same array twice
    cannot say which position is the parameter). ``what`` names the accessor in the
    message (``model_state(state)`` for the model state)."""
    state_leaves = jax.tree_util.tree_leaves(state)
    where: dict[int, list[int]] = {}
    for i, leaf in enumerate(state_leaves):
        where.setdefault(id(leaf), []).append(i)
    positions = []
    for leaf in jax.tree_util.tree_leaves(params):
        found = where.get(id(leaf), [])
        if len(found) != 1:
            why = "is not a leaf of the state" if not found else f"appears {len(found)} times in the state"
            raise UsageError(
                f"JaxStep: an array of shape {np.shape(leaf)} that {what} returns {why}.",
                hint=f"{what} must return the state's own arrays (e.g. lambda s: s.params or lambda s: "
                     "s.batch_stats for a Flax TrainState, get_params for jax.example_libraries.optimizers), "
                     "not copies.")
        positions.append(found[0])
    return positions


def _new_state(out: Any, structure: Any) -> Any:
    """The new state from what the user's step returned: the state itself, or the first
    item of a tuple; told apart by the state's tree ``structure``."""
    if structure == jax.tree_util.tree_structure(out):
        return out
    if isinstance(out, tuple) and out and structure == jax.tree_util.tree_structure(out[0]):
        return out[0]
    raise UsageError(
        f"JaxStep: the step returned a {type(out).__name__} that is neither the state nor a tuple starting with it.",
        hint="Return the new state, or (state, loss) / (state, metrics).")


def default_params(state: Any) -> Any:
    """``params(state)`` when the setup gives none: ``state.params`` for a Flax
    ``TrainState`` (``flax/training/train_state.py``: a pytree with ``params`` and
    ``apply_fn`` fields), else the state itself."""
    if hasattr(state, "params") and hasattr(state, "apply_fn"):
        return lambda s: s.params
    return lambda s: s


def default_model_state(state: Any) -> Any:
    """``model_state(state)`` when the setup gives none: ``state.batch_stats`` for a Flax
    ``TrainState`` that has that field (Flax's ImageNet example subclasses ``TrainState``
    with ``batch_stats: Any``, ``examples/imagenet/train.py``) and holds arrays in it,
    else None (no model state)."""
    if hasattr(state, "apply_fn") and jax.tree_util.tree_leaves(getattr(state, "batch_stats", None)):
        return lambda s: s.batch_stats
    return None


def linen_forward(state: Any, params: Any, x: np.ndarray) -> tuple[list[str], Any] | None:
    """Per-module outputs of a Flax linen model, without a hand-written layer list: when
    ``state.apply_fn`` is a bound ``flax.linen.Module.apply``, its public
    ``capture_intermediates=True`` collects every submodule's ``__call__`` output in the
    ``intermediates`` collection (``flax/linen/module.py:2099``, flax 0.12). One eager
    call on one sample reads the modules in call order (a jitted call would return the
    collection with its keys sorted); returns the names and a jitted
    ``forward(params, x) -> [outputs]``, or None when the model is not linen or needs more
    than ``{"params": ...}`` to run (other collections, RNGs, a ``train`` argument)."""
    import sys

    apply_fn: Any = getattr(state, "apply_fn", None)
    module = getattr(apply_fn, "__self__", None)
    if "flax" not in sys.modules or module is None:
        return None
    import flax.linen as nn

    if not isinstance(module, nn.Module):
        return None

    def collect(p, xs):
        _, found = apply_fn({"params": p}, xs, capture_intermediates=True, mutable=["intermediates"])
        return found["intermediates"]

    try:
        sample = collect(params, x[:1])
    except Exception:  # noqa: BLE001 - activations only localize; a model that needs more runs without them
        return None
    paths: list[tuple] = []

    def walk(tree: Any, path: tuple) -> None:
        for key, value in tree.items():  # insertion order: the order the modules ran
            if key == "__call__":
                paths.extend((*path, i) for i in range(len(value)))
            elif hasattr(value, "items"):
                walk(value, (*path, key))

    walk(sample, ())

    def name(path: tuple) -> str:
        *modules, i = path
        base = "/".join(modules) or type(module).__name__
        return base if i == 0 else f"{base}[{i}]"

    def forward(p, xs):
        found = collect(p, xs)
        outs = []
        for path in paths:
            node = found
            for key in path[:-1]:
                node = node[key]
            outs.append(node["__call__"][path[-1]])
        return outs

    return [name(path) for path in paths], jax.jit(forward)


def linen_intercepted(loss: Any, args: tuple, wrap: Any = jax.jit) -> tuple[list[str], Any] | None:
    """Per-module outputs of the Flax linen modules the user's ``loss`` calls, read through
    linen's public method interception (``flax.linen.intercept_methods``,
    ``flax/linen/module.py:327``, flax 0.12.8): every ``__call__`` of a module returns through an
    interceptor that keeps its output. The loss runs as the setup wrote it, so the model
    is called in its training mode and with its own collections (``batch_stats``), which
    :func:`linen_forward` cannot do.

    Names: each module's path, or the top module's class name, ``[i]`` for its i-th call
    after the first. Outputs that are not arrays with the batch as their first axis are
    left out. ``wrap`` makes the runnable function from ``f(*args) -> [outputs]``:
    ``jax.jit``, or a ``jax.shard_map`` that runs it on each replica's slice and joins the
    outputs in replica order. The wrapped function is traced once on ``args`` (``(params,
    [model_state,] x, y)``, nothing executed) to read the names. Returns the names and the
    wrapped function, or None when flax is not imported, the loss calls no linen module,
    or it does not trace."""
    import sys

    if "flax" not in sys.modules:
        return None
    import flax.linen as nn

    def run(*a: Any) -> tuple[list[str], list[Any]]:
        batch = np.shape(a[-2])[0]
        names: list[str] = []
        outs: list[Any] = []
        calls: dict[str, int] = {}

        def keep(next_fun, fa, fkw, context):
            out = next_fun(*fa, **fkw)
            if context.method_name == "__call__":
                base = "/".join(context.module.path) or type(context.module).__name__
                n = calls[base] = calls.get(base, -1) + 1
                if isinstance(out, jax.Array) and out.ndim >= 1 and out.shape[0] == batch:
                    names.append(base if n == 0 else f"{base}[{n}]")
                    outs.append(out)
            return out

        with nn.intercept_methods(keep):
            loss(*a)
        return names, outs

    traced: dict[str, list[str]] = {}

    def outputs(*a: Any) -> list[Any]:
        traced["names"], outs = run(*a)
        return outs

    try:
        jax.eval_shape(wrap(outputs), *args)
    except Exception:  # noqa: BLE001 - activations only localize; a loss that does not trace runs without them
        return None
    if not traced.get("names"):
        return None
    return traced["names"], wrap(lambda *a: run(*a)[1])


def _stateless_loss(setup: JaxStep, state: Any, data: DataInfo) -> bool:
    """Whether ``setup.loss_fn`` is written ``loss_fn(params, x, y)`` (or ``(params,
    batch)``): it traces on the first batch to a scalar (``jax.eval_shape``, nothing
    executed). Such a loss cannot return the new model state, so a model state found by
    default (:func:`default_model_state`) is then not recorded."""
    if setup.loss_fn is None:
        return False
    sl = data.spec.batch_slice(0)
    params = (setup.params or default_params(state))(state)
    try:
        out = jax.eval_shape(xy_form(setup.loss_fn, 1), params, data.x[sl], data.y[sl])
    except Exception:  # noqa: BLE001 - not this form; the stateful check reports the loss's error
        return False
    return isinstance(out, jax.ShapeDtypeStruct) and out.shape == ()


class JaxStepAdapter(Adapter):
    """Runs :class:`xentdbg.JaxStep`; see the module docstring."""

    # No "weights": the cross-feed re-runs a step on the other side's gradients, which the
    # user's step cannot apply, so updates are not compared against a JaxStep (as against
    # LegacyKerasFunction; xentdbg/replay/engine.py).
    PROBE_PHASES: tuple[str, ...] = ("loss", "gradients", "activations")
    ORACLE_PHASES: tuple[str, ...] = ("loss", "gradients")

    def __init__(self, setup: JaxStep, data: DataInfo):
        self.setup, self.data = setup, data
        self.state = setup.state
        self._params_of = setup.params or default_params(self.state)
        self._positions = param_positions(self.state, self._params_of(self.state))
        self._model_of = setup.model_state or default_model_state(self.state)
        if self._model_of is not None and not jax.tree_util.tree_leaves(self._model_of(self.state)):
            self._model_of = None  # model_state=lambda s: {}: none recorded
        if setup.model_state is None and self._model_of is not None and _stateless_loss(setup, self.state, data):
            self._model_of = None  # a TrainState with batch_stats, and a loss_fn(params, x, y): as before
        self._state_positions: list[int] = []
        self._state_names: list[str] = []
        if self._model_of is not None:
            self._state_positions = param_positions(self.state, self._model_of(self.state), "model_state(state)")
            if set(self._state_positions) & set(self._positions):
                raise UsageError("JaxStep: model_state(state) and params(state) return the same arrays.",
                                 hint="model_state(state) is the non-trainable part (e.g. lambda s: s.batch_stats).")
            self._state_names = path_names(self._model_of(self.state))
            self.PROBE_PHASES = ("loss", "gradients", "activations", "state")
            self.ORACLE_PHASES = ("loss", "gradients", "state")
        stateful = self._model_of is not None
        self._treedef = jax.tree_util.tree_structure(self.state)
        taken = set(self._positions) | set(self._state_positions)
        # the other leaves: the optimizer state (held_optimizer), in leaf order
        self._other_positions = [i for i in range(len(jax.tree_util.tree_leaves(self.state))) if i not in taken]
        both = setup.loss_fn is not None and setup.grads_fn is not None
        if (setup.loss_fn is None and setup.grads_fn is None) or (both and setup.mesh is None):
            raise UsageError("JaxStep needs one of loss_fn and grads_fn (both only with a mesh).",
                             hint="loss_fn(params, x, y) -> loss, or grads_fn(state, x, y) returning the gradients "
                                  "and the loss (as Flax's MNIST example's apply_model does).")
        self.replicas, self._axis, self._split_checked, self._strategy = 1, "", False, ""
        if setup.mesh is not None:
            self._axis, self.replicas = sharding.check_mesh(setup.mesh, setup.batch_axis)
            spec = data.spec
            sizes = [spec.batch_slice(i).stop - spec.batch_slice(i).start for i in range(spec.steps_per_epoch)]
            sharding.check_batches(sizes, self.replicas, self._axis)
        self._loss = xy_form(setup.loss_fn, 2 if stateful else 1) if setup.loss_fn is not None else None
        self._grads_of = xy_form(setup.grads_fn, 1) if setup.grads_fn is not None else None
        self._step = xy_form(setup.step, 2 if setup.indexed else 1)
        params = self._params_of(self.state)
        self._param_names = path_names(params)
        self._grad_fn: Any = (jax.jit(jax.value_and_grad(self._loss, has_aux=stateful))
                              if self._loss is not None else None)
        self._loss_fn: Any = jax.jit(self._loss) if self._loss is not None else None
        self._local: Any = (sharding.local_values_and_grads(setup.mesh, self._axis, self._loss, stateful)
                            if setup.mesh is not None and self._loss is not None else None)
        if self._loss is not None and stateful:
            self._check_stateful_loss()
        self._forward = stax_forward(setup.layers) if setup.layers is not None else None
        self._names = [stax_layer_name(i, layer) for i, layer in enumerate(stax_layers(setup.layers or []))]
        self._forward_args = False  # whether _forward takes the loss's arguments (params, [state,] x, y)
        if setup.layers is None:
            found = linen_forward(self.state, params, data.x) if not stateful else None
            if found is None and self._loss is not None:
                found = self._intercepted()
                self._forward_args = found is not None
            if found is not None:
                self._names, self._forward = found
        self._held: dict[int, tuple] = {}  # step -> (x, y, copy of the pre-step state): the last two steps
        self._grad64: Any = None

    def _check_stateful_loss(self) -> None:
        """Raise :class:`UsageError` unless ``loss_fn(params, model_state, x, y)`` returns
        ``(loss, new_model_state)`` with the model state's tree structure, traced with
        ``jax.eval_shape`` on the first batch (nothing executed): on the whole batch, or
        with a mesh, where the loss may use the mesh axis (``BatchNorm(axis_name=...)``),
        on each replica's slice. Such a loss has no value on the whole batch, so the
        applied gradients must then come from ``grads_fn``."""
        sl = self.data.spec.batch_slice(0)
        x, y = self.data.x[sl], self.data.y[sl]
        args = self._loss_args(self.state)
        model = args[1]
        hint = ("With a model state (a TrainState's batch_stats), loss_fn(params, batch_stats, x, y) must return "
                "(loss, new_batch_stats): e.g. logits, updates = model.apply({'params': params, 'batch_stats': "
                "batch_stats}, x, train=True, mutable=['batch_stats']); return loss, updates['batch_stats']. "
                "To record no model state, pass model_state=lambda s: {}.")

        def failed(e: Exception) -> UsageError:
            first = str(e).splitlines()[0] if str(e) else ""
            return UsageError(f"JaxStep: loss_fn(params, model_state, x, y) failed: {type(e).__name__}: {first}",
                              hint=hint)

        try:
            out = jax.eval_shape(self._loss, *args, x, y)  # type: ignore[arg-type]  # checked by the caller
            loss, new = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        except Exception as e:  # noqa: BLE001 - the user's loss, reported as their input
            if self._local is None:
                raise failed(e) from None
            try:  # on each replica's slice, where the mesh axis is bound
                losses, _, new = jax.eval_shape(self._local, *args, *self._feed(x, y))
                loss = jax.ShapeDtypeStruct(losses.shape[1:], losses.dtype)
                new = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), new)
            except Exception:  # noqa: BLE001 - as above
                raise failed(e) from None
            if self._grads_of is None:
                raise UsageError(f"JaxStep: loss_fn runs only on the mesh, under jax.shard_map ({failed(e).message}): "
                                 "it has no value on the whole batch.",
                                 hint="Give grads_fn, the step's own sharded function, for the gradients the step "
                                      "applies; loss_fn then serves the replicas.") from None
        structure: Any = jax.tree_util.tree_structure(model)
        if not (np.ndim(loss) == 0 and new is not None and jax.tree_util.tree_structure(new) == structure):
            raise UsageError("JaxStep: loss_fn(params, model_state, x, y) does not return (loss, new model state) "
                             "shaped like model_state(state).", hint=hint)

    def _intercepted(self) -> tuple[list[str], Any] | None:
        """:func:`linen_intercepted` on the setup's loss: each replica's forward pass on its
        slice when the step is written with ``jax.shard_map`` (a replica's BatchNorm sees
        only its slice there), else the whole batch's."""
        sl = self.data.spec.batch_slice(0)
        x, y = self.data.x[sl], self.data.y[sl]
        stateful = self._model_of is not None
        args = (*self._loss_args(self.state), x, y)
        wrap: Any = jax.jit
        if self._shard_map_step():
            wrap = sharding.per_replica(self.setup.mesh, self._axis, 2 if stateful else 1)
            args = (*args[:-2], *self._feed(x, y))
        # A jitted loss_fn replays its cached trace, which the interceptor would never see:
        # intercept the function it wraps (jax.jit sets __wrapped__).
        import inspect

        raw = inspect.unwrap(self.setup.loss_fn)  # type: ignore[arg-type]  # _loss exists: loss_fn is set
        return linen_intercepted(xy_form(raw, 2 if stateful else 1), args, wrap)

    # -- the state's three parts -----------------------------------------------
    def _params(self, state: Any) -> list[Any]:
        leaves = jax.tree_util.tree_leaves(state)
        return [leaves[i] for i in self._positions]

    def _model_state(self, state: Any) -> list[Any]:
        leaves = jax.tree_util.tree_leaves(state)
        return [leaves[i] for i in self._state_positions]

    def _others(self, state: Any) -> list[Any]:
        """The leaves that are neither parameters nor model state: the optimizer state, in leaf order."""
        leaves = jax.tree_util.tree_leaves(state)
        return [leaves[i] for i in self._other_positions]

    def _with(self, state: Any, params: list | None = None, others: list | None = None,
              model: list | None = None) -> Any:
        """``state`` with its parameter leaves (other leaves, model-state leaves) replaced,
        each cast to its old dtype."""
        leaves = list(jax.tree_util.tree_leaves(state))
        for positions, values in ((self._positions, params), (self._other_positions, others),
                                  (self._state_positions, model)):
            if values is not None:
                for i, v in zip(positions, values, strict=True):
                    leaves[i] = jnp.asarray(v, dtype=jnp.asarray(leaves[i]).dtype)
        return jax.tree_util.tree_unflatten(self._treedef, leaves)

    def _feed(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        """The batch as the user's step receives it: as it is, or with a mesh placed sharded
        along the batch axis (the split checked once, :func:`_jax_sharding.check_split`)."""
        if self.setup.mesh is None:
            return x, y
        xs, ys = sharding.place(self.setup.mesh, self._axis, [x, y])
        if not self._split_checked:
            sharding.check_split(self.setup.mesh, self._axis, xs)
            self._split_checked = True
        return xs, ys

    def _loss_args(self, state: Any) -> tuple:
        """The arguments of the setup's loss before the batch: ``(params,)``, or ``(params,
        model_state)`` with a model state."""
        params = self._params_of(state)
        return (params,) if self._model_of is None else (params, self._model_of(state))

    def _loss_and_grads(self, state: Any, x: Any, y: Any, fed: tuple | None = None) -> tuple[Any, Any, Any]:
        """The loss, gradients and (with a model state and ``loss_fn``) new model state at
        ``state``'s parameters: ``value_and_grad(loss_fn)`` on the global batch ``x``, ``y``,
        or the user's ``grads_fn(state, x, y)`` on the batch as the step receives it
        (``fed``, sharded with a mesh), whose result holds the gradients (the item with the
        parameters' tree structure) and the loss (its first scalar); the model state is
        then None."""
        if self._grads_of is None:
            value, grads = self._grad_fn(*self._loss_args(state), x, y)
            loss, new = value if self._model_of is not None else (value, None)
            return loss, grads, new
        out = self._grads_of(state, *(fed if fed is not None else (x, y)))
        items = list(out) if isinstance(out, tuple) else [out]
        structure: Any = jax.tree_util.tree_structure(self._params_of(state))
        grads = next((item for item in items if structure == jax.tree_util.tree_structure(item)), None)
        loss = next((item for item in items if np.ndim(item) == 0 and not isinstance(item, dict)), None)
        if grads is None or loss is None:
            raise UsageError("JaxStep: grads_fn returned no item shaped like the parameters, or no scalar loss.",
                             hint="grads_fn(state, x, y) must return the gradients and the loss, e.g. "
                                  "(grads, loss, accuracy).")
        return loss, grads, None

    def _activations(self, state: Any, x: Any, y: Any, fed: tuple) -> list[Any]:
        if self._forward is None:
            return []
        if not self._forward_args:
            return self._forward(self._params_of(state), x)
        return self._forward(*self._loss_args(state), *(fed if self._shard_map_step() else (x, y)))

    def _replicas(self, state: Any, x: np.ndarray, y: np.ndarray,
                  fed: tuple) -> list[dict[str, list[tuple[str, np.ndarray]]]]:
        """Per replica, for ``StepRecord.replicas``: its samples (per-sample sums of its slice
        of ``x``, ``y``) and, with ``loss_fn``, its local loss and gradients at ``state``'s
        parameters (:func:`_jax_sharding.local_values_and_grads` on the sharded batch
        ``fed``); with a model state and a step written with ``jax.shard_map``, the model
        state its forward pass computed from its slice."""
        out: list[dict[str, list[tuple[str, np.ndarray]]]] = [
            {"inputs": batch_fingerprint(x[sl], y[sl])[0]} for sl in sharding.slices(len(x), self.replicas)]
        if self._local is not None:
            losses, grads, *new = self._local(*self._loss_args(state), *fed)
            losses = np.asarray(losses)
            leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]
            states = [np.asarray(s) for s in jax.tree_util.tree_leaves(new[0])] if new else []
            local_state = bool(states) and self._shard_map_step()
            for r, replica in enumerate(out):
                replica["loss"] = [("loss", np.asarray(losses[r]))]
                replica["gradients"] = [(n, g[r]) for n, g in zip(self._param_names, leaves, strict=True)]
                if local_state:
                    replica["state"] = [(n, s[r]) for n, s in zip(self._state_names, states, strict=True)]
        return out

    def _run_step(self, i: int, state: Any, x: Any, y: Any) -> Any:
        args = (i, state, x, y) if self.setup.indexed else (state, x, y)
        return _new_state(self._step(*args), self._treedef)

    def _named_state(self, state: Any) -> list[tuple[str, np.ndarray]]:
        return list(zip(self._state_names, map(np.asarray, self._model_state(state))))

    # -- description -----------------------------------------------------------
    def describe(self) -> SideInfo:
        params, model = self.initial_values()
        fw = {"jax": jax.__version__, "backend": jax.default_backend(), **python_info()}
        if self.setup.mesh is not None:
            mesh = self.setup.mesh
            fw.update(replicas=str(self.replicas), strategy=self._strategy_label(),
                      mesh=", ".join(f"{name}={size}" for name, size in mesh.shape.items()), batch_axis=self._axis)
        return SideInfo(kind="JaxStep", framework=fw,
                        params=[TensorSpec.of(n, a) for n, a in zip(self._param_names, params)],
                        state=[TensorSpec.of(n, a) for n, a in zip(self._state_names, model)],
                        layers=self._layer_names())

    def _shard_map_step(self) -> bool:
        """Whether the step runs per replica in a ``jax.shard_map`` of its own, so that each
        replica's forward pass sees only its slice (under jit sharding XLA computes the
        whole batch's statistics)."""
        return self.setup.mesh is not None and self._strategy_label() == "shard_map"

    def _strategy_label(self) -> str:
        """:func:`_jax_sharding.strategy` of the step, traced once on the first batch."""
        if not self._strategy:
            sl = self.data.spec.batch_slice(0)
            x, y = self._feed(self.data.x[sl], self.data.y[sl])
            args = (0, self.state, x, y) if self.setup.indexed else (self.state, x, y)
            self._strategy = sharding.strategy(self._step, args)
        return self._strategy

    def initial_values(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return [np.asarray(a) for a in self._params(self.state)], [np.asarray(a) for a in self._model_state(self.state)]

    def set_initial_values(self, params, state) -> None:
        self.state = self._with(self.state, params, model=state if self._state_positions else None)

    def _layer_names(self) -> list[str]:
        return self._names

    # -- training --------------------------------------------------------------
    def train(self, steps: int, emit: Emit | None, capture: CaptureMode = CaptureMode.FULL) -> None:
        capture = CaptureMode(capture)
        spec = self.data.spec
        state = self.state
        for i in range(steps):
            sl = spec.batch_slice(i)
            x, y = self.data.x[sl], self.data.y[sl]
            fed = self._feed(x, y)  # with a mesh: sharded along the batch axis
            replicas: list = []
            if emit is not None:
                if capture is CaptureMode.FULL:
                    loss, grads, _ = self._loss_and_grads(state, x, y, fed)
                    acts = self._activations(state, x, y, fed)
                    if self.setup.mesh is not None:
                        replicas = self._replicas(state, x, y, fed)
                    self._held[i] = (x, y, jax.tree_util.tree_map(jnp.copy, state))
                    self._held.pop(i - 2, None)
                elif self._grads_of is None:
                    value = self._loss_fn(*self._loss_args(state), x, y)
                    loss, grads, acts = value[0] if self._model_of is not None else value, None, []
                else:  # grads_fn gives the loss only with the gradients
                    (loss, grads, _), acts = self._loss_and_grads(state, x, y, fed), []
            state = self._run_step(i, state, *fed)  # the user's step, unchanged
            if emit is None:
                continue
            inputs, digests = batch_fingerprint(x, y)
            tensors = {
                "inputs": inputs,
                "activations": [(n, np.asarray(a)) for n, a in zip(self._layer_names(), acts)],
                "loss": [("loss", np.asarray(loss))],
                "gradients": (list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(grads))))
                              if grads is not None else []),
                "state": self._named_state(state),
                "weights": list(zip(self._param_names, map(np.asarray, self._params(state)))),
            }
            emit(StepRecord(step=i, tensors=tensors, digests=digests, replicas=replicas))
        self.state = state

    def final_weights(self) -> list[np.ndarray]:
        return [np.asarray(a) for a in self._params(self.state)]

    # -- probes ----------------------------------------------------------------
    def _held_step(self, step: int) -> tuple:
        if step not in self._held:
            raise ValueError(f"step {step} is no longer held (steps held: {sorted(self._held)})")
        return self._held[step]

    def evaluate(self, step, params, state, grads=None, optimizer=None, batch=None):
        """Step ``step`` re-run by the user's step from ``params`` (and ``state``, the model
        state, when given) and the optimizer state held from before it (or ``optimizer``,
        in :meth:`held_optimizer` order), on its batch or ``batch``. With ``grads`` given,
        ``weights`` is left out: the user's step computes its own gradients and cannot
        apply given ones. The model state is the step's result either way: its forward
        pass sets it from the given values, whatever gradients it applies. With a mesh the
        batch is placed sharded as in training, and each replica's samples, local loss,
        local gradients (and model state) come back under ``replica:<r>:<phase>``."""
        x, y, held = self._held_step(step)
        if batch is not None:
            x, y = given_batch(batch, x, y)
            if self.setup.mesh is not None and len(x) % self.replicas:
                raise ValueError(f"the other side's batch of {len(x)} samples does not split into {self.replicas} "
                                 "replicas")
        fed = self._feed(x, y)
        s = self._with(held, params, optimizer, model=state if self._state_positions else None)
        loss, g, _ = self._loss_and_grads(s, x, y, fed)
        out = {"loss": [("loss", np.asarray(loss))],
               "gradients": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(g))))}
        if self.setup.mesh is not None:
            for r, replica in enumerate(self._replicas(s, x, y, fed)):
                out.update({f"{REPLICA_PREFIX}{r}:{phase}": items for phase, items in replica.items()})
        if self._forward is not None:
            out["activations"] = [(n, np.asarray(a)) for n, a in zip(self._layer_names(),
                                                                      self._activations(s, x, y, fed))]
        if grads is None or self._state_positions:
            # on a copy: a step jitted with donate_argnums frees its input, and s shares the held leaves
            new = self._run_step(step, jax.tree_util.tree_map(jnp.copy, s), *fed)
            if grads is None:
                out["weights"] = list(zip(self._param_names, map(np.asarray, self._params(new))))
            if self._state_positions:  # the forward pass's, whatever gradients the step then applied
                out["state"] = self._named_state(new)
        return out

    def held_optimizer(self, step: int) -> list[np.ndarray]:
        """The leaves of the state held from before step ``step`` that are neither parameters nor model state."""
        return [np.asarray(a) for a in self._others(self._held_step(step)[2])]

    def held_batch(self, step: int) -> list[np.ndarray]:
        x, y, _ = self._held_step(step)
        return [np.asarray(x), np.asarray(y)]

    def oracle(self, params, state, batch):
        """``value_and_grad`` of ``loss_fn`` in float64 (see :meth:`Adapter.oracle`), with the
        model state after its forward pass when there is one; the worker runs with
        ``JAX_ENABLE_X64``, and the returned dtypes show what the loss actually computed in."""
        if not jax.config.read("jax_enable_x64"):
            raise ValueError("JAX x64 is off in this worker")
        if self._grads_of is not None or self._loss is None:
            raise ValueError("the setup gives grads_fn: the gradients the step applies are its own, not loss_fn's")
        stateful = self._model_of is not None
        if self._grad64 is None:
            self._grad64 = jax.jit(jax.value_and_grad(self._loss, has_aux=stateful))
        args: list[Any] = [with_leaves(self._params_of(self.state), params, as_float64)]
        if stateful:
            model = self._model_of(self.state)
            args.append(with_leaves(model, state, as_float64) if state is not None
                        else jax.tree_util.tree_map(as_float64, model))
        value, g = self._grad64(*args, as_float64(batch[0]), as_float64(batch[1]))
        out = {"gradients": list(zip(self._param_names, map(np.asarray, jax.tree_util.tree_leaves(g))))}
        if stateful:
            value, new = value
            out["state"] = list(zip(self._state_names, map(np.asarray, jax.tree_util.tree_leaves(new))))
        out["loss"] = [("loss", np.asarray(value))]
        return out
