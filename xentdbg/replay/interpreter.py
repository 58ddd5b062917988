"""Which Python a replay worker runs under, and how it imports this xentdbg.

Every worker (compare's two, ``--calibrate``'s, the float64 oracle's, ``trace``'s) is
started by :func:`worker_command` as ``PYTHON -c BOOTSTRAP PACKAGE xentdbg.replay.worker
ARGS...``. ``PYTHON`` is the coordinator's own interpreter, or the one the side's
``env`` names under :data:`~xentdbg.report.sides.PYTHON_ENV` (``--python-a``,
``--python-b``, ``trace --python``): another virtual environment, with other TensorFlow,
Keras or JAX versions, so that one setup can be compared with itself across an upgrade.

The worker runs *this* xentdbg, whatever that interpreter has installed: the bootstrap
loads the ``xentdbg`` package from the coordinator's folder (:data:`PACKAGE`) by
location, and takes nothing else from the coordinator's environment; every other import
(numpy, the frameworks) resolves in the worker's own interpreter. Not ``PYTHONPATH``:
the folder that holds the package is, for a regular (not editable) install, the
coordinator's ``site-packages``, and on the worker's path it would put the coordinator's
numpy, TensorFlow and JAX before the interpreter's own, defeating the option. Not a
second xentdbg installed there: two copies drift apart. The worker still needs Python
3.11 or newer and numpy (the wire format) in that interpreter: :func:`check` says so
before a run, in about a second (:func:`xentdbg.replay.preflight.check_interpreters`);
the worker's first message, checked before any other, says which protocol it speaks
(:meth:`xentdbg.replay.process.WorkerProcess.handshake`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

from xentdbg.errors import UsageError
from xentdbg.replay import wire
from xentdbg.report.sides import PYTHON_ENV
from xentdbg.version import __version__

OWN_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The folder of the running ``xentdbg`` package."""
PACKAGE = OWN_PACKAGE
"""The ``xentdbg`` folder every worker imports: this one."""

MIN_PYTHON = (3, 11)
PROBE_TIMEOUT = 60.0  # seconds: a cold interpreter importing numpy from a network file system

# Python 3 of any version must parse these two (the probe reports a too-old one).
_LOAD = """
import importlib.util, os, sys
def _load_xentdbg(folder):
    for name in [n for n in sys.modules if n == "xentdbg" or n.startswith("xentdbg.")]:
        del sys.modules[name]  # another xentdbg a .pth file or sitecustomize imported
    spec = importlib.util.spec_from_file_location(
        "xentdbg", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["xentdbg"] = module
    spec.loader.exec_module(module)
"""

BOOTSTRAP = _LOAD + """
import runpy
sys.path[0] = os.getcwd()  # where python -m puts it (-c puts '')
_load_xentdbg(sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
"""``python -c BOOTSTRAP PACKAGE MODULE ARGS...``: import the xentdbg in ``PACKAGE``, then
run ``MODULE`` as ``python -m MODULE ARGS...`` would."""

_PROBE_MARK = "xentdbg-probe "
PROBE = _LOAD + """
import json
out = {"version": list(sys.version_info[:3]), "executable": sys.executable}
if tuple(sys.version_info[:2]) >= MIN_PYTHON:
    try:
        _load_xentdbg(sys.argv[1])
        import xentdbg.replay.worker
        from xentdbg.replay import wire
        import numpy
        out["protocol"] = wire.PROTOCOL_VERSION
        out["package"] = os.path.dirname(sys.modules["xentdbg"].__file__)
        out["xentdbg"] = sys.modules["xentdbg"].__version__
        out["numpy"] = numpy.__version__
    except BaseException as e:
        out["error"] = type(e).__name__ + ": " + str(e)
print(MARK + json.dumps(out))
""".replace("MIN_PYTHON", repr(MIN_PYTHON)).replace("MARK", repr(_PROBE_MARK))


def worker_command(python: str | None, module: str, args: list[str]) -> list[str]:
    """The command line of a worker running ``module`` under ``python`` (None: this
    interpreter), importing the xentdbg in :data:`PACKAGE`."""
    return [python or sys.executable, "-c", BOOTSTRAP, PACKAGE, module, *args]


def python_of(env: Mapping[str, str]) -> str | None:
    """The interpreter a side's ``env`` names (None: the coordinator's)."""
    return env.get(PYTHON_ENV) or None


def resolve(path: str, flag: str) -> str:
    """``path`` as an absolute path (a bare name is looked up on ``PATH``), not
    following symbolic links: a virtual environment's ``bin/python`` is a link to the base
    interpreter, and only the link's own location makes it that environment's."""
    expanded = os.path.expanduser(path)
    if os.sep not in expanded:
        found = shutil.which(expanded)
        if found is None:
            raise UsageError(f"{flag} {path}: no such command on PATH.", hint=_HINT)
        expanded = found
    return os.path.abspath(expanded)


_HINT = "Give the path of a Python 3.11 or newer with numpy installed, e.g. --python-b ~/venvs/tf218/bin/python."


def check(path: str, flag: str, env: Mapping[str, str] | None = None) -> str:
    """The absolute path of ``path`` (:func:`resolve`) once it proved to be a Python 3.11
    or newer that can run this xentdbg's worker (imports it and numpy, speaks its
    protocol), under the coordinator's environment plus ``env`` (the side's
    ``--env-a/--env-b``). Raises :class:`UsageError` (exit 2) saying what is wrong."""
    full = resolve(path, flag)
    if not os.path.exists(full):
        raise UsageError(f"{flag} {path}: no such file.", hint=_HINT)
    if os.path.isdir(full):
        raise UsageError(f"{flag} {path}: is a directory, not a Python interpreter.", hint=_HINT)
    if not os.access(full, os.X_OK):
        raise UsageError(f"{flag} {path}: is not executable.", hint=_HINT)
    try:
        run = subprocess.run([full, "-c", PROBE, PACKAGE], capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                             stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, errors="replace")
    except subprocess.TimeoutExpired:
        raise UsageError(f"{flag} {path}: did not answer within {PROBE_TIMEOUT:g} s "
                         "(asked for its version and to import xentdbg and numpy).", hint=_HINT) from None
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot be run: {e.strerror or e}.", hint=_HINT) from None
    answer = next((line[len(_PROBE_MARK):] for line in run.stdout.splitlines() if line.startswith(_PROBE_MARK)), None)
    if answer is None:
        said = (_last_line(run.stderr) or _last_line(run.stdout))[:200]
        raise UsageError(f"{flag} {path}: is not a Python 3 interpreter, or failed to start "
                         f"(exit code {run.returncode}{': ' + said if said else ''}).", hint=_HINT,
                         detail=run.stderr[-4000:] or None)
    got = json.loads(answer)
    version = tuple(int(v) for v in got["version"])
    if version[:2] < MIN_PYTHON:
        raise UsageError(f"{flag} {path}: is Python {'.'.join(map(str, version))}; xentdbg's workers need Python "
                         f"{'.'.join(map(str, MIN_PYTHON))} or newer.", hint=_HINT)
    if "error" in got:
        raise UsageError(f"{flag} {path}: cannot run xentdbg's worker: {got['error']}.",
                         hint=f"Install numpy (and the setup's frameworks) there: {full} -m pip install numpy. "
                              f"The worker imports xentdbg itself from {PACKAGE}.")
    if got.get("protocol") != wire.PROTOCOL_VERSION:
        raise mismatch(f"{flag} {path}", got)
    return full


def mismatch(who: str, hello: Mapping[str, object]) -> UsageError:
    """The error for a worker (``who``: "Side B's worker", "--python-b PATH") whose first
    message is not this xentdbg's ``hello`` of :data:`~xentdbg.replay.wire.PROTOCOL_VERSION`."""
    theirs = hello.get("protocol")
    what = (f"speaks wire protocol {theirs}" if theirs is not None
            else "sent no protocol version (an xentdbg from before the handshake, or not xentdbg)")
    ran = ", ".join(f"{k} {hello[k]}" for k in ("xentdbg", "package", "executable") if hello.get(k))
    return UsageError(f"{who} {what}{f' ({ran})' if ran else ''}; this xentdbg {__version__} ({OWN_PACKAGE}) speaks "
                      f"protocol {wire.PROTOCOL_VERSION}.",
                      hint="Both workers must run this xentdbg's code, which each loads from the folder above "
                           "whatever its interpreter has installed: that worker was given another folder, or the "
                           "files there changed after this xentdbg started (an upgrade or a checkout meanwhile). "
                           "Run the command again.")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
