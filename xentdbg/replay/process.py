"""A worker process seen from the coordinator: spawn, talk, read its log, stop it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from xentdbg.data import DataSpec
from xentdbg.errors import SetupFailed, UsageError
from xentdbg.records import CaptureMode, SideInfo, side_info_from_dict
from xentdbg.replay import ring, wire
from xentdbg.replay.forkserver import ForkedProcess, fork_worker
from xentdbg.replay.interpreter import mismatch, python_of, worker_command
from xentdbg.replay.loading import SetupRef, preload_modules
from xentdbg.replay.worker import PARENT_ENV

LOAD_TIMEOUT_FLOOR = 300.0  # seconds: loading imports a framework and builds a model


def load_timeout(step_timeout: float | None) -> float | None:
    """How long a worker may take to load, given ``--step-timeout`` (None: no limit)."""
    return max(step_timeout, LOAD_TIMEOUT_FLOOR) if step_timeout else None


# Quiet TensorFlow's C++ start-up chatter in worker logs unless the user asks otherwise.
DEFAULT_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def _widen(fd: int, size: int = 1 << 20) -> None:
    """Ask Linux for a 1 MiB pipe buffer (default 64 KiB): step records are megabytes."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass  # not Linux, or over /proc/sys/fs/pipe-max-size: the default works, slower


class WorkerProcess:
    """One side (``"A"`` or ``"B"``) running ``python -m xentdbg.replay.worker``.

    The worker gets the coordinator's environment plus ``env`` overrides (e.g.
    ``KERAS_BACKEND=jax``), so framework global state never crosses sides. Its
    stdout/stderr go to a log shown when it fails: an anonymous temporary file (unlinked
    before the worker starts, ``O_TMPFILE`` on Linux) that the coordinator reads through
    its own descriptor, so no log stays behind whatever ends the coordinator, SIGKILL
    included. The worker ends with the coordinator (:func:`xentdbg.replay.worker.tie_to_parent`);
    it learns the coordinator's pid from :data:`PARENT_ENV`.

    It runs under the interpreter ``env`` names (:func:`~xentdbg.replay.interpreter.python_of`,
    ``--python-a/--python-b``), else the coordinator's, and imports this xentdbg either way
    (:func:`~xentdbg.replay.interpreter.worker_command`). Under the coordinator's own
    interpreter it is forked by a fork server that imported ``preload``, the frameworks
    the setup imports first (:mod:`xentdbg.replay.forkserver`; ``self.proc`` is then a
    :class:`~xentdbg.replay.forkserver.ForkedProcess`), else started fresh. Its first
    message is checked by :meth:`handshake` before any other.
    """

    def __init__(self, side: str, env: dict[str, str], preload: list[str] | None = None,
                 float64: dict[str, str] | None = None):
        self.side = side
        self.env_overrides = {**env, **(float64 or {})}
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        _widen(self._from_worker)
        shm_fd = ring.create(side)  # step records' arrays go through shared memory where there is some
        self._ring = ring.RingReader(shm_fd) if shm_fd is not None else None
        self.log = tempfile.TemporaryFile(prefix=f"xentdbg-{side}-", suffix=".log")  # no name on disk
        # ``float64``: what a float64 oracle worker adds to its side's environment. Forked, it
        # comes from the side's own server (the same imports), which switches the frameworks
        # to float64 in the child (:func:`~xentdbg.replay.forkserver.enable_float64`); started
        # fresh, it reads these variables at import.
        side_env = {**os.environ, **DEFAULT_WORKER_ENV, **env, PARENT_ENV: str(os.getpid())}
        full_env = {**side_env, **(float64 or {})}
        fds = (to_worker_r, from_worker_w) + ((shm_fd,) if shm_fd is not None else ())
        self.python = python_of(self.env_overrides)  # None: the coordinator's own
        self.hello: dict | None = None  # the worker's first message, once :meth:`handshake` read it
        self.proc: subprocess.Popen | ForkedProcess
        try:
            forked = None if self.python is not None else fork_worker(
                side_env, preload or [], [*fds, self.log.fileno()], shm=shm_fd is not None, float64=float64)
            self.proc = forked or subprocess.Popen(
                worker_command(self.python, "xentdbg.replay.worker",
                               [str(to_worker_r), str(from_worker_w), str(shm_fd if shm_fd is not None else -1)]),
                pass_fds=fds, env=full_env, stdin=subprocess.DEVNULL,
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as e:  # a --python-a/-b that is missing or not executable (checked before a CLI run)
            for fd in (to_worker_r, from_worker_w, self._to_worker, self._from_worker):
                os.close(fd)
            if self._ring is not None:
                self._ring.close()
            self.log.close()
            raise UsageError(f"Side {side}: cannot start a worker under {self.python or sys.executable}: "
                             f"{e.strerror or e}.") from None
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.step: int | None = None  # the step the worker is in, for error messages
        self._pending: list[tuple[dict, list[np.ndarray]]] = []  # messages read while waiting for a probe

    def send(self, header: dict, arrays: list[np.ndarray] | None = None) -> None:
        try:
            wire.send(self._to_worker, header, arrays)
        except (BrokenPipeError, OSError):
            self._died()

    def recv(self, timeout: float | None = None) -> tuple[dict, list[np.ndarray]]:
        """Next message; raises :class:`SetupFailed` if the worker errs, dies or hangs.

        A step record's arrays may be read-only views into shared memory, valid until two
        more records arrived (:mod:`xentdbg.replay.ring`)."""
        if self._pending:
            return self._pending.pop(0)
        return self._read(timeout)

    def request(self, header: dict, arrays: list[np.ndarray] | None = None) -> threading.Thread:
        """Send a request the worker answers between steps or after ``done`` (a cross-feed
        ``probe``, a ``batch``, an ``oracle`` re-run; see :mod:`xentdbg.replay.worker`);
        :meth:`reply` waits for the answer.

        The request is written from a thread: without the shared-memory ring the worker
        may be writing a record larger than the pipe, and reads the request only after
        the coordinator read that record."""

        def write() -> None:
            try:
                wire.send(self._to_worker, header, arrays)
            except OSError:
                pass  # the worker died: reply() reports it

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        return writer

    def request_probe(self, step: int, params: list[np.ndarray], state: list[np.ndarray] | None,
                      grads: list[np.ndarray] | None, optimizer: list[np.ndarray] | None = None,
                      batch: list[np.ndarray] | None = None) -> threading.Thread:
        """Ask the worker to re-run ``step`` from ``params``/``state`` (and ``optimizer``, an
        optimizer state), on its own batch or ``batch`` (the other side's ``held_batch``)
        (the cross-feed, :meth:`xentdbg.adapters.base.Adapter.evaluate`);
        ``reply(writer, "probed")`` waits."""
        parts = [list(params), list(state or []), list(grads or []), list(optimizer or []), list(batch or [])]
        return self.request({"type": "probe", "step": step, "params": len(parts[0]), "state": len(parts[1]),
                             "grads": len(parts[2]), "optimizer": len(parts[3]), "batch": len(parts[4])},
                            [a for p in parts for a in p])

    def reply(self, writer: threading.Thread, kind: str, timeout: float | None = None
              ) -> tuple[dict, list[np.ndarray]]:
        """The worker's reply of type ``kind`` to a :meth:`request`. A training worker
        answers while it waits for ``next`` (it may first send the next step's record, or
        ``done``: those are kept for :meth:`recv`). The reply's arrays are its own
        (replies never use the ring)."""
        try:
            while True:
                got = self._read(timeout)
                if got[0].get("type") == kind:
                    return got
                self._pending.append(got)
        finally:
            writer.join()

    def handshake(self, timeout: float | None) -> dict:
        """Read the worker's first message, its ``hello`` (:func:`xentdbg.replay.wire.hello`),
        before any other, and check that it speaks this xentdbg's
        :data:`~xentdbg.replay.wire.PROTOCOL_VERSION`. Raises :class:`UsageError` (exit 2)
        when it does not, or when a worker under another interpreter (``--python-a/-b``)
        ends before it says hello (:meth:`_died`)."""
        if self.hello is not None:
            return self.hello
        header, _ = self._read(timeout, check_error=False)  # a worker that ends first: _died says why
        if header.get("type") != "hello" or header.get("protocol") != wire.PROTOCOL_VERSION:
            self.kill()
            raise mismatch(f"Side {self.side}'s worker", header if header.get("type") == "hello" else {})
        self.hello = header
        return header

    def _read(self, timeout: float | None, check_error: bool = True) -> tuple[dict, list[np.ndarray]]:
        if timeout is not None:
            ready, _, _ = select.select([self._from_worker], [], [], timeout)
            if not ready:
                self.kill()
                where = f" in step {self.step}" if self.step is not None else " while loading"
                raise SetupFailed(f"Side {self.side} did not answer within {timeout:g} s{where}.",
                                  side=self.side, step=self.step, hint="Raise --step-timeout if the step is just slow.",
                                  detail=self.log_tail())
        try:
            header, arrays = wire.recv(self._from_worker, self._ring)
        except (wire.ChannelClosed, OSError, ValueError):
            self._died()
        if check_error and header.get("type") == "error":
            self._raise_error(header)
        return header, arrays

    def _raise_error(self, header: dict) -> None:
        step = header.get("step")
        if header["kind"] == "usage":
            raise UsageError(f"Side {self.side}: {header['message']}", hint=header.get("hint"))
        where = f"step {step}" if step is not None else f"{header['stage']}"
        raise SetupFailed(f"Side {self.side} raised {header['exception']} at {where}: {header['message']}",
                          side=self.side, step=step, hint=header.get("hint"), detail=header["traceback"])

    def _died(self):
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        how = (f"was killed by signal {-code}" if code is not None and code < 0
               else f"exited with code {code}" if code is not None else "closed its pipe")
        if self.hello is None and self.python is not None:
            # under another interpreter, before its handshake: that interpreter cannot run
            # xentdbg (no numpy, too old), no fault of the setup, not yet loaded
            said = [line.strip() for line in self.log_tail().splitlines() if line.strip()]
            raise UsageError(f"Side {self.side}'s worker under {self.python} {how} before its handshake"
                             f"{': ' + said[-1] if said else ''}.",
                             hint="That Python must be 3.11 or newer with numpy installed; the worker imports "
                                  "xentdbg itself from this installation.", detail=self.log_tail())
        where = f" in step {self.step}" if self.step is not None else " while loading"
        raise SetupFailed(f"Side {self.side}'s worker {how}{where}.", side=self.side, step=self.step,
                          detail=self.log_tail())

    def log_tail(self, lines: int = 40, window: int = 1 << 16) -> str:
        """The last ``lines`` lines of the worker's output (of its last ``window`` bytes).
        Read with ``pread``: the worker writes through the same open file, whose offset
        must not move."""
        try:
            fd = self.log.fileno()
            size = os.fstat(fd).st_size
            data = os.pread(fd, window, max(0, size - window))
        except (OSError, ValueError):  # closed
            return ""
        text = data.decode(errors="replace")
        if size > window:
            text = text.partition("\n")[2]  # a cut first line
        return "".join(text.splitlines(keepends=True)[-lines:])

    def kill(self) -> None:
        if isinstance(self.proc, ForkedProcess):
            self.proc.kill()
        elif self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self, grace: float = 10.0) -> None:
        """Let a finished worker exit, kill it after ``grace`` seconds, drop its log."""
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._ring is not None:
            self._ring.close()
        deadline = time.monotonic() + grace
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.kill()
        self.log.close()


FLOAT64_ENV = {"JAX_ENABLE_X64": "1"}
"""What a float64 oracle worker adds to its side's environment: JAX reads it at import
(``bool_state("jax_enable_x64")`` reads ``JAX_ENABLE_X64``, jax/_src/config.py:1688,
JAX 0.10). Keras and tf_keras read ``floatx`` from ``$KERAS_HOME/keras.json`` at import
(keras/src/backend/config.py:275-324, Keras 3.15; tf_keras/src/backend.py:7292-7312):
see :func:`_float64_keras_home`."""


_float64_homes: dict[str, tempfile.TemporaryDirectory] = {}


def _float64_keras_home(env: dict[str, str]) -> str:
    """A ``KERAS_HOME`` for a float64 worker: the side's own ``keras.json`` (its backend,
    epsilon, image format), with ``floatx`` float64. One folder per distinct
    configuration, kept until the coordinator exits (``TemporaryDirectory`` removes it
    then), so that the float64 workers of one configuration share an environment. A
    forked float64 worker sets it in the child of its side's own fork server
    (:func:`xentdbg.replay.forkserver.enable_float64`)."""
    import json

    home = env.get("KERAS_HOME") or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            config = json.load(f)
        config = config if isinstance(config, dict) else {}
    except (OSError, ValueError):
        config = {}
    text = json.dumps({**config, "floatx": "float64"}, sort_keys=True)
    folder = _float64_homes.get(text)
    if folder is None or not os.path.isfile(os.path.join(folder.name, "keras.json")):
        folder = _float64_homes[text] = tempfile.TemporaryDirectory(prefix="xentdbg-float64-")
        with open(os.path.join(folder.name, "keras.json"), "w") as f:
            f.write(text)
    return folder.name


def start_worker(side: str, ref: SetupRef, env: dict[str, str], data: DataSpec, steps: int,
                 capture: CaptureMode = CaptureMode.FULL, float64: bool = False) -> WorkerProcess:
    """Spawn a worker and ask it to load ``ref``; it answers with :func:`wait_ready`.
    ``capture``: what the worker captures and sends per step (:class:`CaptureMode`).
    ``float64``: a float64 oracle worker (:mod:`xentdbg.replay.worker`), which never trains."""
    extra = {**FLOAT64_ENV, "KERAS_HOME": _float64_keras_home(env)} if float64 else None
    worker = WorkerProcess(side, env, preload_modules(ref), float64=extra)
    try:
        worker.send({"type": "load", "setup": {"target": ref.target, "function": ref.function},
                     "data": data.to_dict(), "steps": steps, "capture": capture.value, "float64": float64})
    except BaseException:  # it died at once (an interpreter that cannot run xentdbg): nothing left open
        worker.close(grace=0)
        raise
    return worker


def wait_ready(worker: WorkerProcess, timeout: float | None) -> tuple[SideInfo, list[np.ndarray], list[np.ndarray]]:
    """The worker's description and its initial parameters and state, after its
    :meth:`~WorkerProcess.handshake`."""
    worker.handshake(timeout)
    header, arrays = worker.recv(timeout)
    info = side_info_from_dict(header["info"])
    n = len(info.params)
    return info, arrays[:n], arrays[n:]
