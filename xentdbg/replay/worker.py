"""One side of a replay, in its own process: ``python -m xentdbg.replay.worker FD_IN FD_OUT [FD_SHM]``.

``FD_SHM`` (optional): a memfd for step records (:mod:`xentdbg.replay.ring`).

Protocol (see :mod:`xentdbg.replay.wire`), coordinator -> worker then worker -> coordinator:

0. the worker's first message, before it reads anything: ``hello`` {protocol, xentdbg,
   package, python, executable} (:func:`xentdbg.replay.wire.hello`), which the coordinator
   checks before any other (:meth:`xentdbg.replay.process.WorkerProcess.handshake`)
1. ``load`` {setup, data, steps, capture}  ->  ``ready`` {info} + initial parameters and state
   (``info.framework`` completed by :func:`runtime_versions`)
2. ``init`` {params: bool, state: bool} + arrays  ->  (training starts)
3. per step: ``step`` record (fingerprinted when ``capture`` is "fingerprint")  <-  ``next`` or ``stop``
4. ``done``, or at any point ``error`` {kind: usage|setup, message, traceback, step}

While it waits for ``next`` or ``stop``, and after ``done`` until the coordinator closes
the channel, the worker answers cross-feed probes:
``probe`` {step, params: n, state: n, grads: n, optimizer: n, batch: n} + arrays  ->  ``probed`` + a
step record of what :meth:`xentdbg.adapters.base.Adapter.evaluate` returned (on ``batch``, the other
side's, when one was sent: the realignment of a step whose sides trained on other samples), or ``probed`` {error}
when the adapter cannot (the probe's failure is the coordinator's to report; training
goes on untouched). It also answers ``batch`` {step} -> ``batch`` + the arrays step
``step`` trained on (:meth:`~xentdbg.adapters.base.Adapter.held_batch`), and
``optimizer`` {step} -> ``optimizer`` + the optimizer state before it
(:meth:`~xentdbg.adapters.base.Adapter.held_optimizer`), or either with {error}. Replies
to these requests never use the shared-memory ring.

A worker loaded with ``float64: true`` is a float64 oracle
(:mod:`xentdbg.compare.oracle`): the coordinator started it with float64 enabled (JAX
x64, Keras and tf_keras ``floatx``: :func:`xentdbg.replay.process.start_worker`), so the
setup function builds its model in float64. It answers
``ready`` as above (its ``info.probe`` lists the adapter's ``ORACLE_PHASES``), takes no
``init`` and never trains: it answers ``oracle`` {params: n, state: n, batch: n} + arrays
-> ``probed`` + a record of :meth:`~xentdbg.adapters.base.Adapter.oracle`, or ``probed``
{error}, until the coordinator closes the channel.
"""

from __future__ import annotations

import os
import sys
import traceback

from xentdbg.errors import UsageError
from xentdbg.replay import wire

PARENT_ENV = "XENTDBG_COORDINATOR_PID"
"""The coordinator's pid, set in a worker's environment by :class:`xentdbg.replay.process.WorkerProcess`."""
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def tie_to_parent() -> None:
    """End this worker (SIGKILL) when its coordinator dies, however it dies.

    A coordinator that exits or is killed normally closes the channel, and the worker
    ends when it next reads it; but a worker in the middle of a step (a compilation, a
    long step) reads nothing for a while, and one killed coordinator left its workers
    running on. On Linux the kernel sends the parent-death signal the moment the parent
    ends (``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``; strictly, when the thread
    that spawned the worker ends: the coordinator spawns workers from its main thread).
    Asked for here, after the interpreter started: a coordinator that died before is
    seen in ``os.getppid()``, no longer the pid the coordinator passed in
    :data:`PARENT_ENV`. Elsewhere (no ``prctl``) the channel's closing ends the worker
    as before."""
    expected = os.environ.get(PARENT_ENV)
    if not sys.platform.startswith("linux") or not expected:
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:  # the coordinator died before the prctl
        os._exit(0)


VERSIONED = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"), "keras": ("keras",),
             "tf_keras": ("tf-keras", "tf_keras"), "jax": ("jax",), "jaxlib": ("jaxlib",), "flax": ("flax",),
             "optax": ("optax",), "numpy": ("numpy",)}
"""Module -> the distributions that may install it, for :func:`runtime_versions`."""


def runtime_versions(framework: dict[str, str]) -> dict[str, str]:
    """What a worker adds to its adapter's :attr:`~xentdbg.records.SideInfo.framework`: the
    interpreter (``executable``, ``python``) and the version of each library of
    :data:`VERSIONED` the setup imported that the adapter did not report (jaxlib and
    optax under JAX, numpy everywhere, JAX under Keras's JAX backend...): each side's
    full version set, for a comparison across two interpreters (``--python-a/-b``).

    Read from the installed distribution's metadata (:mod:`importlib.metadata`), else the
    module's ``__version__``; nothing is imported (a library the setup did not import is
    not listed: it played no part)."""
    import importlib.metadata
    import platform

    out = {"python": platform.python_version(), "executable": sys.executable}
    for module, distributions in VERSIONED.items():
        if module in framework or module not in sys.modules:
            continue
        for name in distributions:
            try:
                out[module] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            version = getattr(sys.modules[module], "__version__", None)
            if isinstance(version, str):
                out[module] = version
    added = {k: v for k, v in out.items() if k not in framework}
    # the libraries the setup merely imported, apart from the interpreter: reports name them
    # apart from those the adapter ran the model with (xentdbg.report.sides.IMPORTED)
    added["imported"] = ",".join(k for k in added if k not in ("python", "executable"))
    return added


def _send_error(fd: int, kind: str, exc: BaseException, step: int | None, stage: str,
                hint: str | None = None) -> None:
    tb = "".join(traceback.format_exception(exc))
    header = {"type": "error", "kind": kind, "message": str(exc) or type(exc).__name__,
              "exception": type(exc).__name__, "traceback": tb, "step": step, "stage": stage}
    if isinstance(exc, UsageError):
        header["hint"] = exc.hint
    elif hint:
        header["hint"] = hint
    try:
        wire.send(fd, header)
    except OSError:
        pass


def _answer_probe(fd_out: int, adapter, header: dict, arrays: list) -> None:
    from xentdbg.records import StepRecord

    n, m, k = int(header["params"]), int(header["state"]), int(header["grads"])
    o, b = int(header.get("optimizer", 0)), int(header.get("batch", 0))
    params, state = arrays[:n], arrays[n:n + m]
    grads = arrays[n + m:n + m + k] or None
    optimizer = arrays[n + m + k:n + m + k + o] or None
    batch = arrays[n + m + k + o:n + m + k + o + b]
    step = int(header["step"])
    try:
        # a batch only when one was sent: the step re-run on the other side's batch
        extra = {"batch": batch} if b else {}
        tensors = adapter.evaluate(step, params, state if m else None, grads, optimizer, **extra)
    except Exception as e:  # noqa: BLE001  (the probe failing must not end the replay)
        wire.send(fd_out, {"type": "probed", "step": step, "error": f"{type(e).__name__}: {e}"})
        return
    reply, out = StepRecord.of(step, tensors).to_wire()
    wire.send(fd_out, {**reply, "type": "probed"}, out)


def _answer_held(fd_out: int, adapter, header: dict) -> None:
    """``batch`` or ``optimizer``: what the adapter held for a step."""
    kind, step = header["type"], int(header["step"])
    try:
        arrays = adapter.held_batch(step) if kind == "batch" else adapter.held_optimizer(step)
    except Exception as e:  # noqa: BLE001  (as for probes: training goes on)
        wire.send(fd_out, {"type": kind, "step": step, "error": f"{type(e).__name__}: {e}"})
        return
    wire.send(fd_out, {"type": kind, "step": step}, arrays)


def _answer_oracle(fd_out: int, adapter, header: dict, arrays: list) -> None:
    from xentdbg.records import StepRecord

    n, m = int(header["params"]), int(header["state"])
    params, state, batch = arrays[:n], arrays[n:n + m], arrays[n + m:n + m + int(header["batch"])]
    try:
        tensors = adapter.oracle(params, state if m else None, batch)
    except Exception as e:  # noqa: BLE001  (the oracle failing is the coordinator's to report)
        wire.send(fd_out, {"type": "probed", "error": f"{type(e).__name__}: {e}"})
        return
    reply, out = StepRecord(step=-1, tensors=tensors).to_wire()
    wire.send(fd_out, {**reply, "type": "probed"}, out)


def serve(fd_in: int, fd_out: int, shm_fd: int = -1) -> int:
    # Everything heavy is imported here, in the worker, never in the coordinator.
    from xentdbg.adapters import make_adapter
    from xentdbg.adapters.base import StopReplay
    from xentdbg.compare.fingerprint import fingerprint_record
    from xentdbg.data import DataSpec, load
    from xentdbg.records import CaptureMode, side_info_to_dict
    from xentdbg.replay.loading import SetupRef, load_function, missing_module
    from xentdbg.replay.ring import RingWriter

    stage, emitted, data = "load", 0, None
    try:
        wire.send(fd_out, wire.hello())  # first, before reading: the coordinator checks it before anything else
        header, _ = wire.recv(fd_in)
        ref = SetupRef(**header["setup"])
        data = load(DataSpec.from_dict(header["data"]))
        steps = int(header["steps"])
        capture = CaptureMode(header.get("capture", CaptureMode.FULL.value))
        float64 = bool(header.get("float64"))
        fn = load_function(ref)
        stage = "setup"
        try:
            adapter = make_adapter(fn(data), data)
        except ModuleNotFoundError as e:
            raise missing_module(e, ref) from None
        params, state = adapter.initial_values()
        info = adapter.describe()
        info.framework = {**info.framework, **runtime_versions(info.framework)}
        info.probe = list(adapter.ORACLE_PHASES if float64 else
                          adapter.PROBE_PHASES if capture is CaptureMode.FULL else [])
        info.oracle = list(adapter.ORACLE_PHASES)  # what a float64 worker of this setup could re-run
        wire.send(fd_out, {"type": "ready", "info": side_info_to_dict(info)}, params + state)
        if float64:
            while True:  # the oracle: until the coordinator closes the channel
                request, arrays = wire.recv(fd_in)
                if request["type"] == "oracle":
                    _answer_oracle(fd_out, adapter, request, arrays)

        header, arrays = wire.recv(fd_in)
        n = len(params)
        adapter.set_initial_values(arrays[:n] if header["params"] else None,
                                   arrays[n if header["params"] else 0:] if header["state"] else None)
        stage = "step"

        ring = RingWriter(shm_fd) if shm_fd >= 0 else None

        def emit(record) -> None:
            nonlocal emitted
            sent = fingerprint_record(record) if capture is CaptureMode.FINGERPRINT else record
            header, arrays = sent.to_wire()
            wire.send(fd_out, header, arrays, ring=ring)
            emitted += 1
            while True:
                reply, arrays = wire.recv(fd_in)
                if reply["type"] == "probe":
                    _answer_probe(fd_out, adapter, reply, arrays)
                elif reply["type"] in ("batch", "optimizer"):
                    _answer_held(fd_out, adapter, reply)
                else:
                    break
            if reply["type"] == "stop":
                raise StopReplay

        try:
            adapter.train(steps, emit, capture=capture)
        except StopReplay:
            pass
        wire.send(fd_out, {"type": "done"})
        while True:  # probes of the last steps, until the coordinator closes the channel
            reply, arrays = wire.recv(fd_in)
            if reply["type"] == "probe":
                _answer_probe(fd_out, adapter, reply, arrays)
            elif reply["type"] in ("batch", "optimizer"):
                _answer_held(fd_out, adapter, reply)
    except wire.ChannelClosed:
        return 0  # the coordinator went away: nothing left to report to
    except UsageError as e:
        _send_error(fd_out, "usage", e, None, stage)
        return 2
    except BaseException as e:  # the user's setup raised: report it with its traceback
        hint = data.shape_hint(str(e)) if data is not None and stage in ("setup", "step") and emitted == 0 else None
        _send_error(fd_out, "setup", e, emitted if stage == "step" else None, stage, hint)
        return 3


def main(args: list[str]) -> None:
    """A worker's life from its command line ``FD_IN FD_OUT [FD_SHM]`` to its exit (never
    returns): a fresh worker's (``python -m xentdbg.replay.worker``) and a forked one's
    (:mod:`xentdbg.replay.forkserver`)."""
    tie_to_parent()
    from xentdbg._exit import ends_with_fast_exit, fast_exit

    ends_with_fast_exit()
    fast_exit(serve(int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else -1))


if __name__ == "__main__":
    main(sys.argv[1:])
