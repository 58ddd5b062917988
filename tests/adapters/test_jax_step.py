"""JaxStep runs the user's own step unchanged: a captured run ends bitwise where the same
loop ends without xentdbg, for the optimizers pattern, a parameters-only step, an optax
step on a dict state and the same step jitted with donate_argnums. The captured gradients
are the ones the step applied, a re-run from the held state reproduces the step, and the
shared initial weights land inside the user's state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xentdbg import JaxStep, UsageError
from xentdbg.adapters import make_adapter
from xentdbg.data import DataSpec, load
from xentdbg.records import CaptureMode
from xentdbg.replay.loading import SetupRef, load_function

from conftest import ROOT, SETUPS

pytestmark = pytest.mark.slow  # imports JAX and compiles

REAL = ROOT / "examples" / "real"
SETUP_FILES = {"optimizers pattern": f"{REAL / 'jax_mnist_classifier.py'}:fixed",
               "parameters only": str(REAL / "jax_mnist_fromscratch.py"),
               "optax dict state": f"{SETUPS / 'jax_steps.py'}:optax_dict",
               "optax donated": f"{SETUPS / 'jax_steps.py'}:optax_donated"}
STEPS = 3


def _data():
    return load(DataSpec(subset=96, batch_size=32, task="digits", pixels="unit"))


def _setup(name: str, data) -> JaxStep:
    return load_function(SetupRef.parse(SETUP_FILES[name]))(data)


def _bytes(arrays) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in arrays]


def _user_loop(setup: JaxStep, data) -> list[bytes]:
    """The user's own loop, no xentdbg: the step called on the same batches."""
    state = setup.state
    for i in range(STEPS):
        sl = data.spec.batch_slice(i)
        batch = (data.x[sl], data.y[sl])
        if setup.indexed:
            state = setup.step(i, state, batch)
        else:
            import inspect

            n = len(inspect.signature(setup.step).parameters)
            out = setup.step(state, batch) if n == 2 else setup.step(state, *batch)
            state = out[0] if isinstance(out, tuple) else out
    params = setup.params(state) if setup.params else state
    return _bytes(jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("name", sorted(SETUP_FILES))
def test_capture_is_bitwise_neutral(name):
    data = _data()
    plain = _user_loop(_setup(name, data), data)
    for emit, mode in ((None, CaptureMode.FULL), ([].append, CaptureMode.FULL), ([].append, CaptureMode.FINGERPRINT)):
        adapter = make_adapter(_setup(name, data), data)
        adapter.train(STEPS, emit, capture=mode)
        assert _bytes(adapter.final_weights()) == plain, (name, mode, emit is None)


def test_captured_gradients_are_the_applied_ones_and_a_rerun_reproduces_the_step():
    data = _data()
    adapter = make_adapter(_setup("parameters only", data), data)
    before = [w.copy() for w in adapter.initial_values()[0]]
    records = []
    adapter.train(2, records.append, capture=CaptureMode.FULL)
    grads = [g for _, g in records[0].tensors["gradients"]]
    after = [w for _, w in records[0].tensors["weights"]]
    for w0, g, w1 in zip(before, grads, after, strict=True):  # plain SGD at 0.001
        np.testing.assert_allclose(w1, w0.astype(np.float32) - np.float32(0.001) * g, rtol=1e-6, atol=1e-9)
    # re-run step 1 from the weights recorded after step 0: the same loss, gradients, weights
    rerun = adapter.evaluate(1, after, None)
    for phase in ("loss", "gradients", "weights"):
        assert _bytes(t for _, t in rerun[phase]) == _bytes(t for _, t in records[1].tensors[phase]), phase
    # with given gradients, the user's step cannot apply them: weights are left out
    assert "weights" not in adapter.evaluate(1, after, None, grads=grads)
    assert len(adapter.held_optimizer(1)) == 0  # plain SGD: the state is the parameters


def test_initial_weights_land_in_the_users_state():
    data = _data()
    adapter = make_adapter(_setup("optax dict state", data), data)
    params, _ = adapter.initial_values()
    zeros = [np.zeros_like(p) for p in params]
    adapter.set_initial_values(zeros, None)
    assert all(not np.any(p) for p in adapter.initial_values()[0])
    records = []
    adapter.train(1, records.append)
    # the step started from zeros: zero hidden weights give zero hidden gradients
    names = [n for n, _ in records[0].tensors["gradients"]]
    assert names == ["['dense']['b']", "['dense']['w']", "['out']['b']", "['out']['w']"]
    assert not np.any(records[0].tensors["gradients"][1][1])
    # Adam's moments and the counter are the optimizer state (held_optimizer), not parameters
    assert len(adapter.held_optimizer(0)) == 2 * len(params) + 2


def test_parameters_that_are_not_the_states_own_arrays_are_refused():
    data = _data()
    setup = _setup("optax dict state", data)
    setup.params = lambda s: jax.tree_util.tree_map(jnp.copy, s["params"])
    with pytest.raises(UsageError, match="not a leaf of the state"):
        make_adapter(setup, data)


def test_the_stax_serial_pair_is_opened_into_its_layers():
    data = _data()
    adapter = make_adapter(_setup("optimizers pattern", data), data)  # layers=(init_random_params, predict)
    assert adapter.describe().layers == ["layers[0]:Dense", "layers[1]:relu", "layers[2]:Dense", "layers[3]:relu",
                                         "layers[4]:Dense", "layers[5]:log_softmax"]
    records = []
    adapter.train(1, records.append)
    assert [a.shape for _, a in records[0].tensors["activations"]] == [(32, 1024)] * 4 + [(32, 10)] * 2


BN_SETUP = ROOT / "examples" / "distributed" / "jax_bn.py"  # a linen TrainState with batch_stats


def _bn_data():
    return load(DataSpec(subset=96, batch_size=32, task="digits", labels="sparse", pixels="unit"))


def test_a_trainstate_with_batch_stats_records_its_state_and_capture_stays_neutral():
    """The model state is found without model_state= (a TrainState's batch_stats); each
    record's state is the batch_stats the user's own loop has after that step; every leaf
    of the state (parameters, batch_stats, optimizer) ends bitwise where that loop ends."""
    pytest.importorskip("flax")
    data = _bn_data()
    setup = load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data)
    state, after = setup.state, []
    for i in range(STEPS):
        sl = data.spec.batch_slice(i)
        state, _ = setup.step(state, data.x[sl], data.y[sl])
        after.append(_bytes(jax.tree_util.tree_leaves(state.batch_stats)))
    plain = _bytes(jax.tree_util.tree_leaves(state))
    for emit, mode in ((False, CaptureMode.FULL), (True, CaptureMode.FULL), (True, CaptureMode.FINGERPRINT)):
        adapter = make_adapter(load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data), data)
        records: list = []
        adapter.train(STEPS, records.append if emit else None, capture=mode)
        assert _bytes(jax.tree_util.tree_leaves(adapter.state)) == plain, mode
        assert [_bytes(a for _, a in r.tensors["state"]) for r in records] == (after if emit else [])
    info = adapter.describe()
    assert [s.name for s in info.state] == ["['BatchNorm_0']['mean']", "['BatchNorm_0']['var']"]
    assert info.layers == ["Dense_0", "BatchNorm_0", "Dense_1", "MLP"]  # read through the loss, in training mode
    assert "state" in adapter.PROBE_PHASES and "weights" not in adapter.PROBE_PHASES


@pytest.mark.filterwarnings("ignore:shape requires ndarray")  # a refused loss feeds batch_stats to Dense
def test_model_state_lands_in_the_users_state_and_a_loss_without_it_is_refused():
    pytest.importorskip("flax")
    data = _bn_data()
    adapter = make_adapter(load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data), data)
    params, model = adapter.initial_values()
    adapter.set_initial_values(None, [np.full_like(m, 0.5) for m in model])
    assert all(np.all(np.asarray(a) == 0.5) for a in jax.tree_util.tree_leaves(adapter.state.batch_stats))
    assert _bytes(adapter.initial_values()[0]) == _bytes(params)
    records: list = []
    adapter.train(1, records.append)
    mean = records[0].tensors["state"][0][1]  # momentum 0.9 from 0.5, towards the mean of BatchNorm's input
    h = dict(records[0].tensors["activations"])["Dense_0"].astype(np.float64)
    np.testing.assert_allclose(mean, 0.9 * 0.5 + 0.1 * h.mean(axis=0), rtol=1e-5, atol=1e-6)
    rerun = adapter.evaluate(0, params, model, grads=[g for _, g in records[0].tensors["gradients"]])
    assert "weights" not in rerun and [n for n, _ in rerun["state"]] == [n for n, _ in records[0].tensors["state"]]

    setup = load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data)
    logits, stats = setup.state.apply_fn, setup.state.batch_stats
    inference = lambda p, x, y: logits({"params": p, "batch_stats": stats}, x, train=False).mean()  # noqa: E731
    # a loss_fn(params, x, y) with a TrainState's batch_stats: no model state, as before the state phase existed
    setup.loss_fn = inference
    adapter = make_adapter(setup, data)
    records = []
    adapter.train(1, records.append)
    assert adapter.describe().state == [] and records[0].tensors["state"] == [] and "state" not in adapter.PROBE_PHASES
    # asked for explicitly, the state needs the stateful form: refused with the form it needs
    setup.model_state = lambda s: s.batch_stats
    with pytest.raises(UsageError, match=r"loss_fn\(params, model_state, x, y\) failed"):
        make_adapter(setup, data)
    setup.loss_fn = lambda p, b, x, y: logits({"params": p, "batch_stats": b}, x, train=False).mean()
    with pytest.raises(UsageError, match=r"does not return \(loss, new model state\)"):
        make_adapter(setup, data)
    setup.model_state = lambda s: s.params
    with pytest.raises(UsageError, match="return the same arrays"):
        make_adapter(setup, data)
    # opting out of a default model state
    setup = load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data)
    setup.model_state = lambda s: {}
    setup.loss_fn = inference
    assert make_adapter(setup, data).describe().state == []
    setup = load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data)
    setup.model_state = lambda s: jax.tree_util.tree_map(jnp.copy, s.batch_stats)
    with pytest.raises(UsageError, match=r"model_state\(state\) returns is not a leaf of the state"):
        make_adapter(setup, data)


def test_a_donating_step_with_a_model_state_is_re_run_more_than_once():
    """A step jitted with donate_argnums frees its input state: the re-run runs it on a copy,
    so the held state survives, and a second re-run of the same step gives the same."""
    pytest.importorskip("flax")
    data = _bn_data()
    setup = load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data)
    setup.step = jax.jit(setup.step.__wrapped__, donate_argnums=0)
    adapter = make_adapter(setup, data)
    records: list = []
    adapter.train(2, records.append)
    weights, state = ([a for _, a in records[0].tensors[p]] for p in ("weights", "state"))
    grads = [g for _, g in records[1].tensors["gradients"]]
    first = adapter.evaluate(1, weights, state, grads=grads)
    again = adapter.evaluate(1, weights, state)
    for phase in ("loss", "gradients", "state", "activations"):
        assert _bytes(a for _, a in first[phase]) == _bytes(a for _, a in records[1].tensors[phase]), phase
        assert _bytes(a for _, a in again[phase]) == _bytes(a for _, a in first[phase]), phase
    assert _bytes(a for _, a in again["weights"]) == _bytes(a for _, a in records[1].tensors["weights"])
    assert len(adapter.held_optimizer(1)) == len(adapter.held_optimizer(0))


def test_a_jitted_loss_still_gives_the_layer_outputs():
    """jax.jit replays its cached trace, which calls no module: the outputs are read
    through the function it wraps."""
    pytest.importorskip("flax")
    data = _bn_data()
    setup = load_function(SetupRef.parse(f"{BN_SETUP}:single"))(data)
    setup.loss_fn = jax.jit(setup.loss_fn)
    assert make_adapter(setup, data).describe().layers == ["Dense_0", "BatchNorm_0", "Dense_1", "MLP"]
