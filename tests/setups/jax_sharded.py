"""Data-parallel JaxStep setups over 4 CPU devices, and the checks that need those devices,
run in one process (``python jax_sharded.py`` prints one JSON line; the devices exist only
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX starts, which
``tests/adapters/test_jax_sharded.py`` does).

Setups: an Adam step written with ``jax.shard_map`` (local gradients, ``pmean``) and the
same step jitted over the sharded batch (no ``shard_map``: XLA's partitioner splits it).
"""

import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import xentdbg

REPLICAS = 4


def _init(data):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"dense": {"w": 0.05 * jax.random.normal(k1, (data.input_shape[0], 32)), "b": jnp.zeros(32)},
            "out": {"w": 0.05 * jax.random.normal(k2, (32, data.y.shape[1])), "b": jnp.zeros(data.y.shape[1])}}


def loss_fn(params, x, y):
    h = jax.nn.relu(x @ params["dense"]["w"] + params["dense"]["b"])
    return optax.softmax_cross_entropy(h @ params["out"]["w"] + params["out"]["b"], y).mean()


tx = optax.adam(1e-2)


def _step(grads_fn):
    @jax.jit
    def step(state, x, y):
        loss, grads = grads_fn(state["params"], x, y)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, loss

    return step


def _state(data):
    params = _init(data)
    return {"params": params, "opt": tx.init(params)}


def _params(s):
    return s["params"]


def shard_map_grads(mesh, reduce="pmean"):
    def local(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.lax.pmean(loss, "data"), getattr(jax.lax, reduce)(grads, "data")

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P(),
                                 check_vma=False))


def shard_map(data):
    """Adam, the gradients from shard_map: each device's local gradients, pmean-ed."""
    mesh = jax.make_mesh((REPLICAS,), ("data",))
    grads = shard_map_grads(mesh)
    return xentdbg.JaxStep(_step(grads), _state(data), loss_fn, params=_params, mesh=mesh,
                           grads_fn=lambda s, x, y: grads(s["params"], x, y))


def jit_sharded(data):
    """The one-device Adam step, jitted over the batch sharded on an Auto mesh."""
    mesh = jax.make_mesh((REPLICAS,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return xentdbg.JaxStep(_step(jax.value_and_grad(loss_fn)), _state(data), loss_fn, params=_params, mesh=mesh)


SETUPS = {"shard_map": shard_map, "jit": jit_sharded}


# -- the checks -------------------------------------------------------------------
def _data(subset=128, batch=32):
    from xentdbg.data import DataSpec, load

    return load(DataSpec(subset=subset, batch_size=batch, task="digits", pixels="unit"))


def _bytes(arrays) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in arrays]


def neutral(name: str, steps: int) -> dict:
    """The user's own loop (no xentdbg: each batch put on the mesh with NamedSharding,
    the step called) against the adapter plain, with full capture and with fingerprints."""
    from xentdbg.adapters import make_adapter
    from xentdbg.records import CaptureMode

    data = _data()
    setup = SETUPS[name](data)
    sharding = NamedSharding(setup.mesh, P("data"))
    state = setup.state
    for i in range(steps):
        sl = data.spec.batch_slice(i)
        state, _ = setup.step(state, jax.device_put(data.x[sl], sharding), jax.device_put(data.y[sl], sharding))
    plain = _bytes(jax.tree_util.tree_leaves(state["params"]))
    out: dict = {}
    for label, capture, mode in (("none", False, "full"), ("full", True, "full"), ("fingerprint", True, "fingerprint")):
        adapter = make_adapter(SETUPS[name](data), data)
        records: list = []
        adapter.train(steps, records.append if capture else None, capture=CaptureMode(mode))
        final = _bytes(adapter.final_weights())
        last = _bytes(a for _, a in records[-1].tensors["weights"]) if records else final
        out[label] = {"equal": final == plain, "last_record_is_final": last == final,
                      "replicas": [len(r.replicas) for r in records]}
    return out


def split() -> dict:
    """Replica r's slice: ``_jax_sharding.slices`` against JAX's ``devices_indices_map`` of
    ``NamedSharding(mesh, P(axis))``, for a 4-device mesh and both axes of a 2x2 mesh."""
    from xentdbg.adapters import _jax_sharding

    out = {}
    meshes = {"data=4": (jax.make_mesh((4,), ("data",)), "data"),
              "data=2,model=2 on data": (jax.make_mesh((2, 2), ("data", "model")), "data"),
              "data=2,model=2 on model": (jax.make_mesh((2, 2), ("data", "model")), "model")}
    for label, (mesh, axis) in meshes.items():
        for n in (8, 64):
            replicas = int(mesh.shape[axis])
            index = NamedSharding(mesh, P(axis)).devices_indices_map((n, 3))
            pos = list(mesh.axis_names).index(axis)
            ok = all(index[d][0] == _jax_sharding.slices(n, replicas)[int(np.argwhere(mesh.devices == d)[0][pos])]
                     for d in mesh.devices.flat)
            placed, = _jax_sharding.place(mesh, axis, [np.arange(n * 3, dtype=np.float32).reshape(n, 3)])
            _jax_sharding.check_split(mesh, axis, placed)  # raises when a shard is not its slice
            out[f"{label} n={n}"] = ok
    return out


def replicas() -> dict:
    """The shard_map setup's per-replica record: samples, local loss and gradients against
    ``value_and_grad(loss_fn)`` on the replica's slice (one device), their mean against the
    applied gradients; the strategy labels; the cross-feed re-run of step 1."""
    from xentdbg.adapters import make_adapter
    from xentdbg.records import StepRecord, batch_fingerprint

    data = _data()
    adapter = make_adapter(shard_map(data), data)
    before = adapter.initial_values()[0]
    records: list = []
    adapter.train(2, records.append)
    rec = records[0]
    x, y = data.x[data.spec.batch_slice(0)], data.y[data.spec.batch_slice(0)]
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(_init(data)), before)
    local_gap, inputs_equal, loss_gap = 0.0, True, 0.0
    for r, replica in enumerate(rec.replicas):
        sl = slice(r * len(x) // REPLICAS, (r + 1) * len(x) // REPLICAS)
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, x[sl], y[sl])
        inputs_equal &= all(a.tobytes() == b.tobytes() for (_, a), (_, b) in
                            zip(replica["inputs"], batch_fingerprint(x[sl], y[sl])[0], strict=True))
        loss_gap = max(loss_gap, abs(float(loss) - float(replica["loss"][0][1])))
        local_gap = max(local_gap, *(float(np.max(np.abs(np.asarray(g) - a))) for g, (_, a) in
                                     zip(jax.tree_util.tree_leaves(grads), replica["gradients"], strict=True)))
    applied = dict(rec.tensors["gradients"])
    mean_gap = max(float(np.max(np.abs(np.mean([dict(r["gradients"])[n] for r in rec.replicas], axis=0) - g)))
                   for n, g in applied.items())
    names_match = all([n for n, _ in r["gradients"]] == list(applied) for r in rec.replicas)
    rerun = StepRecord.of(1, adapter.evaluate(1, [w for _, w in rec.tensors["weights"]], None))
    rerun_equal = {phase: _bytes(a for _, a in rerun.tensors[phase]) == _bytes(a for _, a in records[1].tensors[phase])
                   for phase in ("loss", "gradients", "weights")}
    rerun_replicas = len(rerun.replicas) == REPLICAS and all(
        _bytes(a for _, a in mine[phase]) == _bytes(a for _, a in theirs[phase])
        for mine, theirs in zip(rerun.replicas, records[1].replicas, strict=True)
        for phase in ("inputs", "loss", "gradients"))
    labels = {name: make_adapter(SETUPS[name](data), data).describe().framework for name in SETUPS}
    keys = ("replicas", "strategy", "mesh", "batch_axis")
    shown = {name: {k: fw.get(k) for k in keys} for name, fw in labels.items()}
    return {"count": len(rec.replicas), "inputs_equal": inputs_equal, "loss_gap": loss_gap, "local_gap": local_gap,
            "mean_gap": mean_gap, "names_match": names_match, "rerun_equal": rerun_equal,
            "rerun_replicas": rerun_replicas,
            "framework": shown}


# -- a linen model with BatchNorm in a TrainState (examples/distributed/jax_bn.py) ----
def _bn_setup(name: str, data):
    from xentdbg.replay.loading import SetupRef, load_function

    path = Path(__file__).resolve().parents[2] / "examples" / "distributed" / "jax_bn.py"
    return load_function(SetupRef.parse(f"{path}:{name}"))(data)


def _bn_data():
    from xentdbg.data import DataSpec, load

    return load(DataSpec(subset=128, batch_size=32, task="digits", labels="sparse", pixels="unit"))


def bn(steps: int) -> dict:
    """The BatchNorm setups on 4 devices: capture neutral on every leaf of the TrainState
    (parameters, batch_stats, optimizer state) in each mode; each replica's recorded
    batch_stats against the example's loss run on its slice alone (per-replica BatchNorm)
    or on the whole batch (BatchNorm(axis_name)); the cross-feed re-run of step 1; a loss
    that needs the mesh axis without grads_fn refused."""
    from xentdbg.adapters import make_adapter
    from xentdbg.errors import UsageError
    from xentdbg.records import CaptureMode, StepRecord

    data = _bn_data()
    out: dict = {"neutral": {}, "local": {}, "rerun": {}}
    for name in ("replicas4", "replicas4_sync"):
        setup = _bn_setup(name, data)
        sharding = NamedSharding(setup.mesh, P("data"))
        state = setup.state
        for i in range(steps):
            sl = data.spec.batch_slice(i)
            state, _ = setup.step(state, jax.device_put(data.x[sl], sharding), jax.device_put(data.y[sl], sharding))
        plain = _bytes(jax.tree_util.tree_leaves(state))
        for mode in ("none", "full", "fingerprint"):
            adapter = make_adapter(_bn_setup(name, data), data)
            records: list = []
            adapter.train(steps, records.append if mode != "none" else None,
                          capture=CaptureMode("full" if mode == "none" else mode))
            last = records[-1].tensors["state"] if records else []
            out["neutral"][f"{name} {mode}"] = {
                "equal": _bytes(jax.tree_util.tree_leaves(adapter.state)) == plain,
                "state_is_final": not records or _bytes(a for _, a in last) == _bytes(
                    jax.tree_util.tree_leaves(adapter.state.batch_stats))}
        adapter = make_adapter(_bn_setup(name, data), data)
        records = []
        adapter.train(2, records.append)
        rec, s0 = records[0], _bn_setup(name, data).state
        x, y = data.x[data.spec.batch_slice(0)], data.y[data.spec.batch_slice(0)]
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "distributed"))
        from jax_bn import MLP, loss_of  # the example's own loss, on one device

        gap = 0.0
        for r, replica in enumerate(rec.replicas):
            rows = slice(r * len(x) // REPLICAS, (r + 1) * len(x) // REPLICAS) if name == "replicas4" else slice(None)
            _, want = jax.jit(loss_of(MLP()))(s0.params, s0.batch_stats, x[rows], y[rows])
            gap = max(gap, *(float(np.max(np.abs(np.asarray(w) - a))) for w, (_, a) in
                             zip(jax.tree_util.tree_leaves(want), replica["state"], strict=True)))
        spread = max(float(np.max(np.abs(a - b))) for rep in rec.replicas[1:]
                     for (_, a), (_, b) in zip(rep["state"], rec.replicas[0]["state"], strict=True))
        normed = dict(rec.tensors["activations"])["BatchNorm_0"]  # each replica's rows, in replica order
        slice_means = max(float(np.max(np.abs(normed[16 * r:16 * (r + 1)].mean(axis=0)))) for r in range(REPLICAS))
        out["local"][name] = {"gap": gap, "spread": spread, "names": [n for n, _ in rec.tensors["state"]],
                              "layers": [n for n, _ in rec.tensors["activations"]], "slice_means": slice_means}
        rerun = StepRecord.of(1, adapter.evaluate(1, [w for _, w in rec.tensors["weights"]],
                                                  [s for _, s in rec.tensors["state"]]))
        out["rerun"][name] = {phase: _bytes(a for _, a in rerun.tensors[phase]) ==
                              _bytes(a for _, a in records[1].tensors[phase])
                              for phase in ("loss", "gradients", "state", "weights", "activations")}
        out["rerun"][name]["replica state"] = all(
            _bytes(a for _, a in mine["state"]) == _bytes(a for _, a in theirs["state"])
            for mine, theirs in zip(rerun.replicas, records[1].replicas, strict=True))
    setup = _bn_setup("replicas4_sync", data)
    setup.grads_fn = None
    try:
        make_adapter(setup, data)
        out["refused"] = None
    except UsageError as e:
        out["refused"] = e.message
    return out


def refused() -> dict:
    """The UsageError messages for a batch that does not split, a mesh that is not a Mesh
    and an axis the mesh lacks."""
    from xentdbg.adapters import make_adapter
    from xentdbg.errors import UsageError

    out = {}
    data = _data(subset=120, batch=30)
    cases = {"indivisible": lambda s: s,
             "not a mesh": lambda s: setattr(s, "mesh", "data") or s,
             "no such axis": lambda s: setattr(s, "batch_axis", "batch") or s}
    for label, change in cases.items():
        try:
            make_adapter(change(jit_sharded(data)), data)
            out[label] = None
        except UsageError as e:
            out[label] = e.message
    data = _data(subset=100, batch=32)  # the epoch's last batch holds 4 samples: it splits
    make_adapter(jit_sharded(data), data)
    data = _data(subset=102, batch=32)  # ... 6 samples: it does not
    try:
        make_adapter(jit_sharded(data), data)
        out["short last batch"] = None
    except UsageError as e:
        out["short last batch"] = e.message
    return out


if __name__ == "__main__":
    assert isinstance(jax.devices(), list) and len(jax.devices()) >= REPLICAS, jax.devices()
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    result = {"neutral": {name: neutral(name, steps) for name in SETUPS}, "split": split(),
              "replicas": replicas(), "refused": refused(), "bn": bn(steps)}
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)
