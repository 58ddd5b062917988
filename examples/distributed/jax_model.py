"""One MNIST classifier (Dense 64, ReLU, Dense 10; optax SGD 0.1; softmax cross-entropy on
integer labels) trained by a JAX step on one device, and data-parallel on 4 devices with
``jax.shard_map`` or with ``jax.jit`` over a sharded batch. The global batch is the same
(64): each device trains on 16 samples of it.

On a machine without 4 accelerators the 4 devices are CPU devices: run the data-parallel
side with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (``--env-b`` of
``xentdbg compare``), which JAX reads when it starts. With 4 GPUs the same file runs on them.

xentdbg feeds a data-parallel step each global batch placed as a data-parallel input
pipeline places it, ``jax.device_put(x, NamedSharding(mesh, P("data")))``: device ``r``
holds samples ``16 r .. 16 r + 15``.
"""

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import xentdbg

DEVICES = 4
tx = optax.sgd(0.1)


def init(data) -> dict:
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"hidden": {"w": jax.random.normal(k1, (data.input_shape[0], 64)) * 0.05, "b": jnp.zeros(64)},
            "out": {"w": jax.random.normal(k2, (64, 10)) * 0.05, "b": jnp.zeros(10)}}


def loss_fn(params, x, y):
    """The mean cross-entropy over the samples it is given (a replica's: its own 16)."""
    h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
    logits = h @ params["out"]["w"] + params["out"]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train_step(grads_fn):
    """The optax step, with the gradients from ``grads_fn(params, x, y) -> (loss, grads)``."""
    @jax.jit
    def step(state, x, y):
        loss, grads = grads_fn(state["params"], x, y)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, loss

    return step


def start(data) -> dict:
    params = init(data)
    return {"params": params, "opt": tx.init(params)}


def mesh(axis_types=None) -> Mesh:
    if jax.device_count() < DEVICES:
        raise xentdbg.UsageError(f"this setup trains on {DEVICES} devices; JAX sees {jax.device_count()}.",
                                 hint=f"On a CPU: XLA_FLAGS=--xla_force_host_platform_device_count={DEVICES} "
                                      "(--env-b XLA_FLAGS=... for xentdbg compare).")
    return jax.make_mesh((DEVICES,), ("data",), axis_types=axis_types)


def sharded(data, reduce: str, check_vma: bool) -> xentdbg.JaxStep:
    """A ``jax.shard_map`` step: each device differentiates ``loss_fn`` on its 16 samples,
    then ``reduce`` (``pmean`` or ``psum``) combines the gradients across devices."""
    m = mesh()

    def local(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.lax.pmean(loss, "data"), getattr(jax.lax, reduce)(grads, "data")

    grads_fn = jax.jit(jax.shard_map(local, mesh=m, in_specs=(P(), P("data"), P("data")), out_specs=P(),
                                     check_vma=check_vma))
    return xentdbg.JaxStep(train_step(grads_fn), start(data), loss_fn, params=lambda s: s["params"], mesh=m,
                           grads_fn=lambda s, x, y: grads_fn(s["params"], x, y))


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def single(data):
    """One device, global batch 64."""
    step = train_step(jax.value_and_grad(loss_fn))
    return xentdbg.JaxStep(step, start(data), loss_fn, params=lambda s: s["params"])


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def shard4(data):
    """4 devices of 16 with ``jax.shard_map``: the local gradients averaged (``pmean``)."""
    # check_vma=False: with the default True, jax.grad inside shard_map already sums the
    # gradients of the replicated parameters over the devices (see vma_pmean).
    return sharded(data, "pmean", check_vma=False)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def unscaled(data):
    """4 devices, the local gradients (each a mean over 16 samples) summed (``psum``): 4x."""
    return sharded(data, "psum", check_vma=False)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def vma_pmean(data):
    """``shard4`` with ``shard_map``'s default ``check_vma=True``: ``jax.grad`` of the
    replicated parameters comes back summed over the devices (the transpose of the implicit
    ``pvary`` is a ``psum``), and the ``pmean`` of that sum leaves it: 4x."""
    return sharded(data, "pmean", check_vma=True)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def jit4(data):
    """The one-device step, jitted over the batch sharded on 4 devices (``AxisType.Auto``:
    XLA's partitioner splits the step and all-reduces the gradients)."""
    m = mesh(axis_types=(jax.sharding.AxisType.Auto,))
    step = train_step(jax.value_and_grad(loss_fn))
    return xentdbg.JaxStep(step, start(data), loss_fn, params=lambda s: s["params"], mesh=m)
