"""A Flax linen MLP with BatchNorm (Dense 64, BatchNorm, ReLU, Dense 10; optax SGD 0.1;
softmax cross-entropy on integer labels) in a ``TrainState`` with ``batch_stats``, as
Flax's ImageNet example keeps it, trained by a JAX step on one device and data-parallel
on 4 devices with ``jax.shard_map``. The global batch is the same (64): each device trains
on 16 samples of it.

On the 4 devices each replica's BatchNorm normalizes with the statistics of the samples
it sees. Without ``axis_name`` those are its own 16 (per-replica BatchNorm, the default);
with ``BatchNorm(axis_name="data")`` linen averages the statistics over the devices of
that mesh axis with ``jax.lax.pmean`` (``flax/linen/normalization.py:118-135``, flax
0.12), which gives the whole batch's. Either way the step averages the replicas' new
``batch_stats`` with ``pmean``, so that the state stays one value on every device.

Run the data-parallel side with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(``--env-b`` of ``xentdbg compare``) on a machine without 4 accelerators.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.sharding import PartitionSpec as P

import xentdbg

DEVICES = 4


class MLP(nn.Module):
    axis_name: str | None = None  # the mesh axis BatchNorm averages its statistics over

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(64)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(x)
        return nn.Dense(10)(nn.relu(x))


class TrainState(train_state.TrainState):
    batch_stats: Any


def loss_of(model: MLP):
    """``loss_fn(params, batch_stats, x, y) -> (loss, new batch_stats)`` of ``model`` in training mode."""
    def loss_fn(params, batch_stats, x, y):
        logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

    return loss_fn


def start(data, model: MLP) -> TrainState:
    variables = MLP().init(jax.random.PRNGKey(0), jnp.zeros((1, *data.input_shape)), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1),
                             batch_stats=variables["batch_stats"])


def train_step(grads_fn):
    """Apply the gradients ``grads_fn(params, batch_stats, x, y) -> (loss, grads, batch_stats)`` returns."""
    @jax.jit
    def step(state, x, y):
        loss, grads, batch_stats = grads_fn(state.params, state.batch_stats, x, y)
        return state.apply_gradients(grads=grads, batch_stats=batch_stats), loss

    return step


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def single(data):
    """One device, global batch 64."""
    loss_fn = loss_of(MLP())

    def grads(params, batch_stats, x, y):
        (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x, y)
        return loss, g, new

    return xentdbg.JaxStep(train_step(grads), start(data, MLP()), loss_fn)


def sharded(data, model: MLP) -> xentdbg.JaxStep:
    """4 devices of 16 with ``jax.shard_map``: each differentiates its own loss, then the
    loss, the gradients and the new ``batch_stats`` are averaged with ``pmean``."""
    if jax.device_count() < DEVICES:
        raise xentdbg.UsageError(f"this setup trains on {DEVICES} devices; JAX sees {jax.device_count()}.",
                                 hint=f"On a CPU: XLA_FLAGS=--xla_force_host_platform_device_count={DEVICES} "
                                      "(--env-b XLA_FLAGS=... for xentdbg compare).")
    mesh = jax.make_mesh((DEVICES,), ("data",))
    loss_fn = loss_of(model)

    def local(params, batch_stats, x, y):
        (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x, y)
        return jax.lax.pmean((loss, g, new), "data")

    grads = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P("data"), P("data")), out_specs=P(),
                                  check_vma=False))
    return xentdbg.JaxStep(train_step(grads), start(data, model), loss_fn, mesh=mesh,
                           grads_fn=lambda s, x, y: grads(s.params, s.batch_stats, x, y))


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4(data):
    """Per-replica BatchNorm (no ``axis_name``): each device normalizes with its 16 samples' statistics."""
    return sharded(data, MLP())


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4_sync(data):
    """``BatchNorm(axis_name="data")``: the statistics averaged over the 4 devices, the whole batch's."""
    return sharded(data, MLP(axis_name="data"))
