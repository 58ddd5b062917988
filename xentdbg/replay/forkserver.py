"""Workers forked from a process that already imported the frameworks: a fork server.

Importing TensorFlow costs about 3.5 s of CPU per process, and Keras on top of it, JAX
about 1 s (measured with TensorFlow 2.21, Keras 3.15, JAX 0.10 on this project's 2-core
CI machine). A comparison starts two workers, ``--calibrate`` and the float64 oracle one
or two more, and a test run hundreds. A fork server imports the setup's frameworks once
and forks a worker for each request; the worker then runs
:func:`xentdbg.replay.worker.main`, exactly as a freshly started one would.

What keeps a forked worker identical to a fresh one:

* **One server per start-up context.** A server serves one (environment, working
  directory, xentdbg folder, preload list) for workers of the coordinator's own
  interpreter (the key of :func:`fork_worker`): everything a framework reads when it is
  imported (``KERAS_BACKEND``, ``XLA_FLAGS``, ``TF_USE_LEGACY_KERAS``, ``$KERAS_HOME/keras.json``,
  ``JAX_ENABLE_X64``) is the same as the fresh worker's. A worker under another
  interpreter (``--python-a/-b``) is started fresh.
* **It imports only what the setup imports first** (:func:`xentdbg.replay.loading.preload_modules`),
  in the setup's order, before any statement of the user's would have run.
* **Nothing runs in the frameworks before the fork.** Importing TensorFlow does not
  create its eager context, nor does importing JAX start a backend: both happen at the
  first op (``context.ensure_initialized``, tensorflow/python/eager/context.py;
  ``xla_bridge.backends()``, jax/_src/xla_bridge.py). :func:`_runtime_started` checks both
  after the imports; a server whose image is not clean (an import raised, a runtime
  started) execs a fresh worker in the forked child instead, so the answer is right
  either way. The only threads the imports start are OpenBLAS's pools (numpy's and
  scipy's, which tf_keras imports), which OpenBLAS parks and restarts around ``fork``
  with its own ``pthread_atfork`` handlers.
* **The child is set up as ``subprocess.Popen`` sets up a fresh worker:** its own session,
  stdin from ``/dev/null``, stdout and stderr to its log, the worker's descriptors and no
  others of the coordinator's; Python's ``random`` reseeds itself after a fork
  (``os.register_at_fork`` in random.py) and numpy's legacy global generator is reseeded
  here, so unseeded draws differ between workers as between fresh processes.

Lifetimes: a server ends with its coordinator (the parent-death signal,
:func:`xentdbg.replay.worker.tie_to_parent`), and each worker with its server; a server
whose coordinator closed its channel serves no more and exits once its workers did. A
worker's pid and exit status reach the coordinator through a pipe of its own
(:class:`ForkedProcess`), the server being the worker's parent.

``XENTDBG_FORK_SERVER=0`` starts every worker fresh (``python -c BOOTSTRAP ...``), as
before the fork server; the neutrality tests compare the two.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict

from xentdbg.replay.worker import PARENT_ENV

ENV_SWITCH = "XENTDBG_FORK_SERVER"
"""``0`` in the coordinator's environment: no fork server, every worker starts fresh."""
MAX_SERVERS = 8
"""Servers kept per coordinator, least recently used closed first. Each holds its
frameworks' imports: 231 MB of private memory with Keras on TensorFlow, 66 MB with JAX
and optax (``Private_Dirty`` in ``/proc/PID/smaps_rollup``; the libraries' code is shared
with the workers). A comparison uses at most 2, one per side: a side's float64 oracle is
forked by the side's own server (:func:`enable_float64`). A test process of the suite
uses 24-27 and raises the cap to 32 (``tests/conftest.py``)."""
PID_WAIT = 120.0
"""Seconds :meth:`ForkedProcess.kill` waits for a server still importing to fork the
worker before it kills the server instead."""
WORKER_NAME = b"xentdbg-worker"
"""A forked worker's process name (``/proc/PID/comm``, ``ps -o comm``): its command line is its server's."""
VOLATILE_ENV = (PARENT_ENV, "PYTEST_CURRENT_TEST", "COLUMNS", "LINES")
"""Variables a server's key leaves out, and a forked worker takes from its request: the
coordinator's pid (:data:`xentdbg.replay.worker.PARENT_ENV`, replaced by the server's in a
forked worker), the test pytest is running, which pytest rewrites around every test
phase ("PYTEST_CURRENT_TEST environment variable", pytest's reference), and the terminal's
size, which differs from one shell (or one test's ``CliRunner``) to the next. No
framework reads them on import: TensorFlow, Keras, tf_keras, JAX, Flax and optax never
name ``COLUMNS`` or ``LINES``, and the two that ask for the terminal's size do it when
called (``shutil.get_terminal_size`` in ``keras/src/utils/summary_utils.py:225``, Keras
3.15, for ``Model.summary``; in ``absl/flags/_helpers.py:163`` for a flag's help text),
by when the worker has its own values."""
_MAX_REQUEST = 1 << 16
_PR_SET_NAME = 15  # linux/prctl.h


def enabled() -> bool:
    """Whether workers may be forked: on Linux (``SCM_RIGHTS`` over a ``SOCK_SEQPACKET``
    socket pair, the parent-death signal), unless :data:`ENV_SWITCH` says ``0``."""
    return sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1") != "0"


# --------------------------------------------------------------------- coordinator side


class ForkedProcess:
    """A worker forked by a server, seen from the coordinator: the parts of
    :class:`subprocess.Popen` a :class:`~xentdbg.replay.process.WorkerProcess` uses
    (``pid``, :meth:`poll`, :meth:`wait`, ``returncode``) and :meth:`kill`.

    The server writes ``P<pid>`` to the worker's status pipe when it forked it and
    ``X<code>`` when it reaped it (``code`` as :attr:`subprocess.Popen.returncode`: minus the
    signal that killed it). A pipe that closes before ``X`` means the server died, and
    its workers with it (their parent-death signal is SIGKILL)."""

    def __init__(self, status_fd: int, server: _Server):
        self._fd = status_fd
        self._server = server
        self._buffer = b""
        self._pid: int | None = None
        self.returncode: int | None = None

    def _take(self, timeout: float | None) -> bool:
        """Read what the server wrote within ``timeout`` (None: until it writes); False
        when nothing came."""
        if self._fd < 0:
            return False
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return False
        chunk = os.read(self._fd, 4096)
        if not chunk:  # the server is gone, and took the worker with it
            os.close(self._fd)
            self._fd = -1
            if self.returncode is None:
                self.returncode = -signal.SIGKILL
            return True
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"P"):
                self._pid = int(line[1:])
            elif line.startswith(b"X"):
                self.returncode = int(line[1:])
        return True

    @property
    def pid(self) -> int | None:
        """The worker's pid, once the server forked it (waits up to :data:`PID_WAIT`)."""
        deadline = time.monotonic() + PID_WAIT
        while self._pid is None and self.returncode is None and time.monotonic() < deadline:
            self._take(max(0.0, deadline - time.monotonic()))
        return self._pid

    def poll(self) -> int | None:
        while self.returncode is None and self._take(0):
            pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("xentdbg worker", timeout or 0.0)
            self._take(left)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the worker and its process group (its own session), and wait for it. A
        server that has not forked it within :data:`PID_WAIT` (stuck importing) is
        killed instead: nothing it would fork can be trusted."""
        if self.poll() is not None:
            return
        pid = self.pid
        if pid is None:
            self._server.kill()
        else:
            # the process itself first: a child just forked may not have called setsid()
            # yet, and then no process group has its pid (killpg fails with ESRCH)
            for kill in (os.kill, os.killpg):
                try:
                    kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.wait()


class _Server:
    """One fork server process and its end of the request channel."""

    def __init__(self, env: dict[str, str], preload: list[str]):
        from xentdbg.replay.interpreter import worker_command

        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = tempfile.TemporaryFile(prefix="xentdbg-forkserver-", suffix=".log")  # no name on disk
        try:
            self.proc = subprocess.Popen(
                worker_command(None, "xentdbg.replay.forkserver", [str(theirs.fileno()), ",".join(preload)]),
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            theirs.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, fds: list[int], shm: bool, volatile: dict[str, str],
             float64: dict[str, str] | None = None) -> ForkedProcess:
        """Ask for a worker with ``fds`` (its channel in, channel out, [shared memory],
        log) and the :data:`VOLATILE_ENV` variables ``volatile``; a float64 worker with the
        variables ``float64`` adds (:func:`enable_float64`). Raises OSError when the server
        is gone."""
        status_r, status_w = os.pipe()
        request = {"shm": shm, "env": volatile, **({"float64": float64} if float64 else {})}
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [*fds, status_w])
        except OSError:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        return ForkedProcess(status_r, self)

    def close(self) -> None:
        """Serve no more: the server exits once its workers did."""
        self.sock.close()
        self.log.close()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


_servers: OrderedDict[tuple, _Server] = OrderedDict()
_lock = threading.Lock()


def fork_worker(env: dict[str, str], preload: list[str], fds: list[int], shm: bool,
                float64: dict[str, str] | None = None) -> ForkedProcess | None:
    """A worker forked by the server for (``env``, the working directory, the xentdbg
    folder workers import (:data:`~xentdbg.replay.interpreter.PACKAGE`), ``preload``),
    started on first use; None when workers are not forked here (:func:`enabled`) or the
    server cannot be reached twice in a row (the caller then starts the worker fresh).

    ``env`` is the worker's whole environment; :data:`~xentdbg.replay.worker.PARENT_ENV`
    in it names the coordinator, and a forked worker's names its server. The key leaves
    out :data:`VOLATILE_ENV`. ``fds``: the worker's channel in, channel out, shared
    memory if ``shm``, and log. ``float64``: for a float64 oracle worker, the variables
    it adds to ``env`` (its side's); it is forked by its side's server, which already
    imported the frameworks, and switches them in the child (:func:`enable_float64`)."""
    if not enabled():
        return None
    from xentdbg.replay.interpreter import PACKAGE  # the code the server runs, as its command names it

    key = (os.getcwd(), PACKAGE, tuple(sorted((k, v) for k, v in env.items() if k not in VOLATILE_ENV)),
           tuple(preload))
    volatile = {k: env[k] for k in VOLATILE_ENV if k in env}
    with _lock:
        for _ in range(2):
            server = _servers.pop(key, None)
            if server is None or not server.alive():
                if server is not None:
                    server.close()
                server = _Server(env, preload)
            _servers[key] = server  # the most recently used last
            while len(_servers) > MAX_SERVERS:
                _servers.popitem(last=False)[1].close()
            try:
                return server.fork(fds, shm, volatile, float64)
            except OSError:
                _servers.pop(key).close()
    return None


# --------------------------------------------------------------------- server side


def _runtime_started() -> str | None:
    """Which framework runtime this process already started (None: none), the reason a
    forked worker would not start as a fresh one would: a TensorFlow eager context or a
    JAX backend."""
    tf_context = sys.modules.get("tensorflow.python.eager.context")
    if tf_context is not None and getattr(tf_context, "_context", None) is not None:
        if getattr(tf_context._context, "_context_handle", None) is not None:
            return "the TensorFlow eager context was initialized"
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and getattr(bridge, "_backends", None):
        return "a JAX backend was initialized"
    return None


def _preload(modules: list[str]) -> str | None:
    """Import ``modules`` in order; why the image is not clean, or None."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001  (the worker imports it again and reports it)
            return f"importing {name} raised {type(e).__name__}"
    return _runtime_started()


def enable_float64() -> None:
    """Switch the frameworks this image imported to float64, as a fresh float64 oracle
    worker (:data:`xentdbg.replay.process.FLOAT64_ENV`) finds them after its imports.

    A fresh one reads its environment at import: JAX's ``jax_enable_x64`` from
    ``JAX_ENABLE_X64`` (jax/_src/config.py:1688, JAX 0.10), Keras's and tf_keras's
    ``floatx`` from ``$KERAS_HOME/keras.json`` (keras/src/backend/config.py:275-324,
    Keras 3.15; tf_keras/src/backend.py:7292-7312). Here the server imported them under
    its side's environment (the same ``keras.json`` but for ``floatx``), and nothing has
    run in them (:func:`_runtime_started`), so the public setters give the same state:
    ``jax.config.update("jax_enable_x64", True)``, which JAX accepts before its first
    computation, and ``keras.config.set_floatx`` / ``tf_keras.backend.set_floatx``,
    which every layer built afterwards reads. Neither library keeps a copy of the value
    made at import (``floatx()`` and the x64 flag are read where they are used).
    Frameworks the image did not import read the environment when the setup imports them.
    ``tests/adapters/test_oracle.py`` checks a forked float64 worker bitwise against a
    fresh one on each adapter kind."""
    if "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_enable_x64", True)
    if "keras" in sys.modules:
        sys.modules["keras"].config.set_floatx("float64")
    if "tf_keras" in sys.modules:
        sys.modules["tf_keras"].backend.set_floatx("float64")


def _set_name(name: bytes) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _child(request: dict, fds: list[int], server_pid: int, unclean: str | None, inherited: list[int]) -> None:
    """In the forked child: become the worker (never returns)."""
    try:
        for fd in inherited:  # the server's channel, other workers' status pipes
            try:
                os.close(fd)
            except OSError:
                pass
        fd_in, fd_out, *rest = fds
        shm = rest.pop(0) if request.get("shm") else -1
        log, status = rest
        os.close(status)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        from xentdbg.replay.worker import main

        for name in VOLATILE_ENV:  # the rest of the environment is the server's: the same (the key)
            if name in request["env"]:
                os.environ[name] = request["env"][name]
            else:
                os.environ.pop(name, None)
        os.environ[PARENT_ENV] = str(server_pid)
        os.environ.update(request.get("float64") or {})  # a fresh float64 worker's environment
        args = [str(fd_in), str(fd_out), str(shm)]
        if unclean is not None:  # start it fresh, in this process: nothing imported here carries over
            from xentdbg.replay.interpreter import worker_command

            for fd in (fd_in, fd_out, shm):
                if fd >= 0:
                    os.set_inheritable(fd, True)
            command = worker_command(None, "xentdbg.replay.worker", args)
            os.execve(command[0], command, dict(os.environ))
        _set_name(WORKER_NAME)
        if request.get("float64"):
            enable_float64()
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()  # as a fresh process's: from the OS's entropy
        sys.argv = [sys.modules["xentdbg.replay.worker"].__file__ or "", *args]
        main(args)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        os._exit(70)


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def serve(sock: socket.socket, preload: list[str]) -> None:
    """The server's loop: fork a worker per request until the coordinator closes the
    channel, then wait for the workers to end."""
    import warnings

    # Python 3.12+ warns at fork when the process has threads: here only OpenBLAS's pools
    # (see the module's docstring), which OpenBLAS restarts in the child itself
    warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning)
    unclean = _preload(preload)
    if unclean:
        print(f"xentdbg fork server: {unclean}; each worker is started fresh", file=sys.stderr, flush=True)
    import gc

    # The imports' objects, moved out of the collector's reach: a child's collections then
    # never write to their pages, which stay shared with this process instead of being
    # copied into every worker ("gc.freeze", Python's gc documentation). Nothing of the
    # user's exists yet; the child collects its own objects as usual.
    gc.freeze()
    children: dict[int, tuple[int, int]] = {}  # pid -> (status pipe, pidfd or -1)
    accepting = True
    while accepting or children:
        watched = ([sock] if accepting else []) + [p for _, p in children.values() if p >= 0]
        # a pidfd turns readable when its process ends (Linux 5.3); without one, poll
        polled = any(p < 0 for _, p in children.values())
        ready, _, _ = select.select(watched, [], [], 0.05 if polled else None)
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                status_fd, pidfd = children.pop(pid)
                try:
                    os.write(status_fd, b"X%d\n" % os.waitstatus_to_exitcode(status))
                except OSError:
                    pass  # the coordinator no longer listens
                os.close(status_fd)
                if pidfd >= 0:
                    os.close(pidfd)
        if not accepting or sock not in ready:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, 8)
        except OSError:
            message, fds = b"", []
        if not message:
            accepting = False
            sock.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        inherited = [sock.fileno()] + [fd for pair in children.values() for fd in pair if fd >= 0]
        pid = os.fork()
        if pid == 0:
            _child(json.loads(message), fds, os.getppid(), unclean, inherited)
        for fd in fds[:-1]:
            os.close(fd)
        status_fd = fds[-1]
        try:
            os.write(status_fd, b"P%d\n" % pid)
        except OSError:
            pass
        children[pid] = (status_fd, _pidfd(pid))


if __name__ == "__main__":
    from xentdbg.replay.worker import tie_to_parent

    tie_to_parent()
    server_socket = socket.socket(fileno=int(sys.argv[1]))
    serve(server_socket, [m for m in sys.argv[2].split(",") if m])
    from xentdbg._exit import fast_exit

    fast_exit(0)
