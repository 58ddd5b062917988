"""Workers forked from a fork server (:mod:`xentdbg.replay.forkserver`) train and record
bitwise what freshly started workers do, for every setup kind; the server imports only
what a setup imports before its first statement; a server that could not import cleanly
starts its workers fresh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from xentdbg.replay import forkserver
from xentdbg.replay.loading import SetupRef, preload_modules

from conftest import CASE1, ROOT, SETUPS, run_cli

SMALL = ["--subset", "200", "--batch-size", "100", "--task", "digits", "--pixels", "unit", "--steps", "3"]


def _write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return str(folder / name)


def test_the_preload_is_the_frameworks_a_setup_imports_before_its_own_first_statement(tmp_path):
    _write(tmp_path, "common.py", '"""Doc."""\nimport os\nimport keras\nimport xentdbg\nSEED = 1\n')
    setup = _write(tmp_path, "setup.py", "from __future__ import annotations\nimport numpy as np\n"
                                         "from jax import numpy as jnp\nimport optax, jax.numpy\nimport common\n"
                                         "import tensorflow\n")
    # common.py's "SEED = 1" runs before setup.py imports tensorflow: the scan stops there
    assert preload_modules(SetupRef(setup, "f")) == ["jax", "optax", "jax.numpy", "keras"]
    env_first = _write(tmp_path, "env_first.py", "import os\nos.environ['XLA_FLAGS'] = 'x'\nimport jax\n")
    assert preload_modules(SetupRef(env_first, "f")) == []
    third_party = _write(tmp_path, "third.py", "import keras\nimport some_plugin\nimport jax\n")
    assert preload_modules(SetupRef(third_party, "f")) == ["keras"]  # a package may set flags on import
    broken = _write(tmp_path, "broken.py", "import jax\ndef (:\n")
    assert preload_modules(SetupRef(broken, "f")) == []
    assert preload_modules(SetupRef(str(tmp_path / "missing.py"), "f")) == []


def test_fork_server_switch(monkeypatch):
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    assert not forkserver.enabled()
    monkeypatch.setenv(forkserver.ENV_SWITCH, "1")
    assert forkserver.enabled() == sys.platform.startswith("linux")


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _trace(setup: str, out: Path, env: dict[str, str]) -> None:
    run = run_cli("trace", setup, "--out", str(out), *SMALL, tmp_path=out.parent, env=env)
    assert run.code == 0, run.output


def _assert_bitwise(a: Path, b: Path) -> None:
    first, second = _datasets(a), _datasets(b)
    assert first.keys() == second.keys() and any("gradients" in k for k in first)
    for name, value in first.items():
        assert value.dtype == second[name].dtype and value.shape == second[name].shape, name
        assert value.tobytes() == second[name].tobytes(), name


KINDS = {
    "keras 3 fit, tensorflow": (str(SETUPS / "keras_bn.py"), {}),
    "keras 3 fit, jax": (str(SETUPS / "keras_bn.py"), {"KERAS_BACKEND": "jax"}),
    "keras 3 compiled loop": (f"{SETUPS / 'keras_loops.py'}:compiled", {}),
    "tf_keras fit": (str(SETUPS / "tf_keras_bn.py"), {"TF_USE_LEGACY_KERAS": "1"}),
    "jax loop": (str(CASE1 / "jax_stable.py"), {}),
    "fit under MirroredStrategy": (f"{SETUPS / 'keras_mirrored.py'}:fit", {}),
}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_forked_worker_records_bitwise_what_a_fresh_one_records(kind, tmp_path):
    setup, env = KINDS[kind]
    _trace(setup, tmp_path / "fresh.h5", {**env, forkserver.ENV_SWITCH: "0"})
    _trace(setup, tmp_path / "forked.h5", env)  # the default: a server this process may already hold
    _assert_bitwise(tmp_path / "fresh.h5", tmp_path / "forked.h5")
    preload = tuple(preload_modules(SetupRef.parse(setup)))
    assert preload and _server(preload, env).alive()  # forked from a server that imported the frameworks


def _server(preload: tuple[str, ...], env: dict[str, str]) -> forkserver._Server:
    """The live server this test process holds for ``preload`` under ``env``."""
    return next(server for (_, _, environment, modules), server in forkserver._servers.items()
                if modules == preload and set(env.items()) <= set(environment))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_a_server_that_cannot_import_cleanly_starts_its_workers_fresh(tmp_path, monkeypatch):
    setup = str(CASE1 / "jax_stable.py")
    _trace(setup, tmp_path / "fresh.h5", {forkserver.ENV_SWITCH: "0"})
    preload = ["jax", "xentdbg_no_such_module"]
    monkeypatch.setattr("xentdbg.replay.process.preload_modules", lambda ref: preload)
    _trace(setup, tmp_path / "forked.h5", {forkserver.ENV_SWITCH: "1"})
    _assert_bitwise(tmp_path / "fresh.h5", tmp_path / "forked.h5")
    log = _server(tuple(preload), {}).log
    assert b"importing xentdbg_no_such_module raised ModuleNotFoundError; each worker is started fresh" in \
        os.pread(log.fileno(), 1 << 16, 0)


COLUMNS_SETUP = """import os

import jax
import jax.numpy as jnp
import optax

import xentdbg

# the terminal width this worker was started with, as a file beside this one
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "columns-" + os.environ.get("COLUMNS", "unset")),
     "w").close()


def setup(data):
    params = {"w": jnp.zeros((data.input_shape[0], 1)), "b": jnp.zeros((1,))}

    def loss_fn(params, x, y):
        p = jnp.clip(jax.nn.sigmoid(x @ params["w"] + params["b"]), 1e-6, 1 - 1e-6)
        return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))

    return xentdbg.JaxLoop(params, loss_fn, optax.sgd(0.1))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_workers_under_another_terminal_width_share_a_server_and_each_sees_its_own_width(tmp_path):
    """``COLUMNS`` is volatile (:data:`~xentdbg.replay.forkserver.VOLATILE_ENV`): a run
    from a wider terminal forks from the server a narrower one started, and its worker
    sees its own width, as a fresh worker would."""
    setup = _write(tmp_path, "columns.py", COLUMNS_SETUP)
    own = {"XENTDBG_TEST_SERVER_KEY": f"columns-{tmp_path.name}"}  # this test's servers only
    preload = tuple(preload_modules(SetupRef.parse(setup)))
    assert preload == ("jax", "jax.numpy", "optax")
    servers = []
    for columns in ("77", "99"):
        run = run_cli("trace", setup, "--out", str(tmp_path / f"{columns}.h5"), "--subset", "200", "--batch-size",
                      "100", "--steps", "1", tmp_path=tmp_path, env={**own, "COLUMNS": columns})
        assert run.code == 0, run.output
        servers.append(_server(preload, own))
    assert servers[0] is servers[1] and servers[0].alive()
    assert sum(1 for (_, _, env, _), _ in forkserver._servers.items() if set(own.items()) <= set(env)) == 1
    assert sorted(p.name for p in tmp_path.glob("columns-*")) == ["columns-77", "columns-99"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_past_the_cap_the_least_recently_used_server_is_closed_and_exits(monkeypatch):
    """Servers for :data:`~xentdbg.replay.forkserver.MAX_SERVERS` start-up contexts at
    most: past it the least recently used is closed, and it exits once its workers did.
    (Servers that import nothing, in a table of this test's own: the test process's
    servers are left alone.)"""
    from collections import OrderedDict

    from xentdbg.replay.process import WorkerProcess

    monkeypatch.setattr(forkserver, "_servers", OrderedDict())
    monkeypatch.setattr(forkserver, "MAX_SERVERS", 2)

    def key_of(server: forkserver._Server) -> str:
        return next(dict(env)["XENTDBG_TEST_SERVER_KEY"] for (_, _, env, _), s in forkserver._servers.items()
                    if s is server)

    workers, servers = [], []
    try:
        for key in ("1", "2", "1"):  # "1" used again: "2" is now the least recently used
            workers.append(WorkerProcess("A", {"XENTDBG_TEST_SERVER_KEY": key}, preload=[]))
            assert isinstance(workers[-1].proc, forkserver.ForkedProcess)
        servers = list(forkserver._servers.values())
        assert [key_of(s) for s in servers] == ["2", "1"]
        least = servers[0]
        workers.append(WorkerProcess("A", {"XENTDBG_TEST_SERVER_KEY": "3"}, preload=[]))
        servers = [*servers, *forkserver._servers.values()]
        assert least not in forkserver._servers.values() and len(forkserver._servers) == 2
        assert least.alive()  # closed, it waits for its worker
        workers[1].kill()
        workers[1].close(grace=0)
        assert least.proc.wait(timeout=60) == 0  # and exits once that worker ended
    finally:
        for w in workers:
            w.kill()
            w.close(grace=0)
        for server in servers:
            server.close()


@pytest.mark.slow
def test_importing_the_frameworks_starts_no_runtime_and_running_an_op_does():
    """The fact the fork server rests on, for the installed versions: after ``import``,
    neither TensorFlow's eager context nor a JAX backend exists; after one op, each does."""
    code = ("import tensorflow as tf, keras, jax, jax.numpy as jnp, optax, flax\n"
            "from xentdbg.replay.forkserver import _runtime_started as started\n"
            "print(started()); tf.constant(1.0) + 1; print(started())\n"
            "import importlib; ctx = importlib.import_module('tensorflow.python.eager.context')\n"
            "ctx._context._context_handle = None; jnp.ones(2) + 1; print(started())\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["None", "the TensorFlow eager context was initialized",
                                       "a JAX backend was initialized"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_a_worker_killed_the_moment_it_is_forked_ends():
    """A coordinator may kill a worker right after the server forked it (the other side's
    setup failed at once), before the child called ``setsid``: killing its process group
    alone then found nothing and the coordinator waited for ever (a suite run hung here)."""
    import threading

    from xentdbg.replay.process import WorkerProcess

    for _ in range(5):
        worker = WorkerProcess("A", {}, preload=[])
        assert isinstance(worker.proc, forkserver.ForkedProcess)
        killer = threading.Thread(target=worker.kill, daemon=True)
        killer.start()
        killer.join(60)
        assert not killer.is_alive(), "kill() did not return"
        assert worker.proc.returncode == -9
        worker.close(grace=0)
