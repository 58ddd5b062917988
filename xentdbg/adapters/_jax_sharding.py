"""Data-parallel JAX as :class:`xentdbg.JaxStep` uses it: a global batch placed on a
``jax.sharding.Mesh`` the way a data-parallel input pipeline places it, the replicas of
the batch axis, and what each replica computes on its own slice before the reduction.

What it relies on in JAX (0.10.2; paths under ``jax/_src``):

- ``NamedSharding(mesh, P(axis))`` tiles dimension 0 of an array ``R = mesh.shape[axis]``
  ways in the order of the mesh's positions along ``axis``, and replicates it over the
  other mesh axes (``named_sharding.py:389-462``: the tile assignment is the mesh
  reshaped so that ``axis`` tiles dim 0, the unnamed axes last; ``sharding.py:44-56`` and
  ``op_shardings.py:106-110`` map it to each device's index). So replica ``r``, every
  device at position ``r`` along ``axis``, holds samples ``[r n/R, (r+1) n/R)``: the
  ``r``-th contiguous slice. :func:`check_split` verifies it on the placed arrays.
- ``device_put`` refuses a dimension that the sharding does not divide evenly
  (``core.py:2247-2258``, a ``ValueError``): the global batch must be a multiple of ``R``.
- Inside ``shard_map`` with ``check_vma=True`` (the default) a replicated (invariant)
  input that meets a per-device (varying) value is cast with ``pvary``, whose transpose is
  ``psum`` (``lax/parallel.py:2453-2456``): ``jax.grad`` with respect to replicated
  parameters returns the gradients already summed over the replicas. The local gradients
  here are taken with ``check_vma=False``, which inserts no such cast: each replica's
  own gradient of its own loss (measured: they equal ``value_and_grad`` on the slice).

JAX is imported by the callers; this module imports it at import time, and is imported
only by the JAX adapters.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from xentdbg.errors import UsageError


def check_mesh(mesh: Any, axis: str | None) -> tuple[str, int]:
    """The batch axis (``axis``, or the mesh's first) and the number of replicas along it.
    Raises :class:`UsageError` for something that is not a ``jax.sharding.Mesh`` or an
    axis it does not have."""
    if not isinstance(mesh, Mesh):
        raise UsageError(f"JaxStep mesh is a {type(mesh).__name__}, not a jax.sharding.Mesh.",
                         hint="Pass the mesh the step shards the batch over, e.g. jax.make_mesh((4,), ('data',)).")
    names = tuple(mesh.axis_names)
    name = names[0] if axis is None else axis
    if name not in names:
        raise UsageError(f"JaxStep batch_axis {axis!r} is not an axis of the mesh (axes {names}).",
                         hint="Name the mesh axis the batch is split along (P(axis) in the step's in_specs).")
    return str(name), int(mesh.shape[name])


def check_batches(sizes: list[int], replicas: int, axis: str) -> None:
    """Raise :class:`UsageError` when a global batch size does not split evenly into the
    replicas (``device_put`` would refuse it, ``core.py:2247-2258``)."""
    bad = sorted({n for n in sizes if n % replicas})
    if bad:
        raise UsageError(
            f"JaxStep: a global batch of {bad[0]} samples does not split into the {replicas} replicas of mesh axis "
            f"{axis!r}; jax.device_put with NamedSharding(mesh, P({axis!r})) needs a multiple of {replicas}.",
            hint=f"Use a --batch-size that is a multiple of {replicas}, and a --subset that is a multiple of the "
                 "batch size (the last batch of an epoch is otherwise shorter).")


def slices(n: int, replicas: int) -> list[slice]:
    """Replica ``r``'s samples of a global batch of ``n``: the ``r``-th contiguous slice of
    ``n / replicas`` (see the module docstring)."""
    size = n // replicas
    return [slice(r * size, (r + 1) * size) for r in range(replicas)]


def place(mesh: Mesh, axis: str, arrays: list[np.ndarray]) -> list[jax.Array]:
    """Each array of one global batch split along dimension 0 over ``axis``, as a
    data-parallel input pipeline feeds a step: ``device_put(a, NamedSharding(mesh, P(axis)))``."""
    sharding = NamedSharding(mesh, P(axis))
    return [jax.device_put(np.asarray(a), sharding) for a in arrays]


def check_split(mesh: Mesh, axis: str, placed: jax.Array) -> None:
    """Check that each device holds the slice :func:`slices` assigns to its position along
    ``axis``; raises :class:`RuntimeError` otherwise (a JAX whose layout differs)."""
    position = {d: int(np.argwhere(mesh.devices == d)[0][list(mesh.axis_names).index(axis)])
                for d in mesh.devices.flat}
    expected = slices(placed.shape[0], int(mesh.shape[axis]))
    for shard in placed.addressable_shards:
        got, want = shard.index[0], expected[position[shard.device]]
        if (got.start or 0, placed.shape[0] if got.stop is None else got.stop) != (want.start, want.stop):
            raise RuntimeError(f"device {shard.device} holds samples {got}, not {want} (replica "
                               f"{position[shard.device]} of axis {axis!r}): this JAX splits a batch differently")


def per_replica(mesh: Mesh, axis: str, replicated: int) -> Any:
    """``wrap(f)``: ``f`` run by each replica on its own slice of the batch, jitted:
    ``jax.shard_map`` over ``mesh`` with ``in_specs`` ``P()`` for the first
    ``replicated`` arguments (parameters, model state) and ``P(axis)`` for the batch
    ``x``, ``y``, and ``out_specs`` ``P(axis)``: the outputs (each with a leading axis per
    replica, or per sample) joined along their first axis in replica order.
    ``check_vma=False``, so that the gradients taken inside stay local (module docstring);
    collectives over ``axis`` (a BatchNorm's ``axis_name``) still run."""
    specs = (*[P()] * replicated, P(axis), P(axis))
    return lambda f: jax.jit(jax.shard_map(f, mesh=mesh, in_specs=specs, out_specs=P(axis), check_vma=False))


def local_values_and_grads(mesh: Mesh, axis: str, loss: Any, stateful: bool = False) -> Any:
    """A jitted ``f(params, [model_state,] x, y) -> (losses, grads[, model_states])``: each
    replica's loss and gradients of ``loss`` on its own slice of the batch at the given
    (replicated) parameters::

        losses[r], grads[r] = value_and_grad(loss)(params, x[slice r], y[slice r])

    stacked along a new leading axis of length ``R`` (:func:`per_replica`). A
    ``stateful`` loss takes the model state after the parameters and returns ``(loss,
    new_model_state)``; each replica's new model state is stacked the same way."""
    def stack(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda g: g[None], tree)

    def local(*args):
        if stateful:
            (value, new), grads = jax.value_and_grad(loss, has_aux=True)(*args)
            return value[None], stack(grads), stack(new)
        value, grads = jax.value_and_grad(loss)(*args)
        return value[None], stack(grads)

    return per_replica(mesh, axis, 2 if stateful else 1)(local)


def strategy(step: Any, args: tuple) -> str:
    """How the user's step splits its work, as far as its traced program tells:
    ``"shard_map"`` when it holds a ``shard_map`` (the step's own per-replica code and
    collectives), else ``"jit sharding"`` (XLA's partitioner splits the step over the
    sharded batch). Tracing runs the step's Python once without executing it
    (``jax.make_jaxpr``); a step that cannot be traced gives ``"sharded batch"``."""
    try:
        closed = jax.make_jaxpr(step)(*args)
    except Exception:  # noqa: BLE001 - the label only describes; a step that does not trace runs as written
        return "sharded batch"
    return "shard_map" if _holds(closed.jaxpr, "shard_map") else "jit sharding"


def _holds(jaxpr: Any, primitive: str) -> bool:
    """Whether ``jaxpr`` or a jaxpr nested in its equations' parameters (``jit``'s
    ``jaxpr``, a ``cond``'s ``branches``, ...) binds ``primitive``."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            return True
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(item, "jaxpr", item)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(inner, "eqns") and _holds(inner, primitive):
                    return True
    return False
