"""Paths named on the command line, checked before any worker starts.

Inputs (setup files, traces, data and array files) must be regular files that can be read:
:func:`describe_not_file` says what a path is instead ("is a directory", "is a FIFO, not a
regular file"), for the messages of every reader.

Outputs (``--json``, ``--markdown``, ``--svg``, ``trace --out``, ``--save-traces DIR``) are
checked up front, so that a report that cannot be written fails in a second with exit 2
instead of after the whole run. The checks never truncate or alter a file the user has:

- an existing file is opened for appending and closed at once (no byte written, its
  modification time unchanged);
- a missing file is created exclusively and removed at once (a missing ``--save-traces``
  folder likewise, with ``mkdir`` and ``rmdir``), which is the one test that does not lie
  where :func:`os.access` does (root, read-only mounts, ``/proc``);
- a target on a kernel pseudo-filesystem (``/proc``, ``/sys``, cgroups, ...) is refused
  outright, as is a directory, a FIFO, a socket or a block device: writing a report there
  fails, blocks, or changes the system. A character device (``/dev/null``, a terminal) is
  accepted, and so is any file this process already holds open (``/dev/stdout``,
  ``/dev/stderr``, a shell's ``>(...)`` process substitution).

:func:`write_outputs` writes the reports at the end and collects what failed anyway (a
full disk, a folder removed during the run), so that the caller can say so and still
report the run's verdict (:func:`xentdbg.replay.preflight.exit_after_writing`).

Plain strings and no xentdbg imports: the readers of every layer use it; the checks that
raise are :mod:`xentdbg.replay.preflight`'s.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable

PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs", "pstore", "bpf",
    "efivarfs", "binfmt_misc", "fusectl", "mqueue", "autofs", "rpc_pipefs", "nsfs",
})
"""Kernel interfaces mounted as file systems: a report written there fails or changes the system."""

_KINDS = ((stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO, not a regular file"),
          (stat.S_ISSOCK, "is a socket, not a regular file"), (stat.S_ISBLK, "is a block device, not a regular file"),
          (stat.S_ISCHR, "is a character device, not a regular file"))


# -- inputs ------------------------------------------------------------------------------

def describe_not_file(path: str | os.PathLike) -> str:
    """What ``path`` is, for a reader that needs a regular file and found none there:
    "no such file", "is a directory", "is a FIFO, not a regular file", ...
    (a phrase to follow the path: ``f"{path}: {describe_not_file(path)}."``)."""
    return file_problem(path) or "is not a regular file"


def file_problem(path: str | os.PathLike) -> str | None:
    """None if ``path`` is a regular file this process can read, else what is wrong, as
    :func:`describe_not_file` says it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "is a broken symbolic link" if os.path.islink(path) else "no such file"
    except NotADirectoryError:
        return "no such file (a part of the path is not a directory)"
    except PermissionError:
        return "cannot be reached (permission denied on a folder of its path)"
    except (OSError, ValueError) as e:  # a name too long, a NUL byte, a symlink loop
        return f"cannot be read ({_reason(e)})"
    for test, what in _KINDS:
        if test(st.st_mode):
            return what
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


# -- outputs -----------------------------------------------------------------------------

def output_problem(path: str) -> str | None:
    """None if a report can be written to the file ``path`` (created or replaced), else what is wrong."""
    if not path:
        return "is an empty path"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return "is a broken symbolic link"
        return _creatable(path)
    except NotADirectoryError:
        return f"cannot be created: {_blocking_component(path)} is not a directory"
    except (OSError, ValueError) as e:
        return f"cannot be reached ({_reason(e)})"
    if _held_open(st):
        return None  # /dev/stdout, /dev/stderr, >(...): the process's own open file
    for test, what in _KINDS[:-1]:  # a character device (/dev/null, a terminal) is fine
        if test(st.st_mode):
            return what
    fs = _pseudo_filesystem(os.path.realpath(path))
    if fs is not None:
        return f"is on a {fs} filesystem (a kernel interface), not a place for a report"
    try:  # append, not truncate: nothing of the file changes
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)))
    except OSError as e:
        return f"exists and cannot be written ({_reason(e)})"
    return None


def folder_problem(path: str) -> str | None:
    """None if ``path`` is a folder files can be written into, or one that can be created
    (with its missing parents), else what is wrong."""
    if not path:
        return "is an empty path"
    existing, missing = os.path.abspath(path), None
    while True:
        try:
            st = os.stat(existing)
            break
        except FileNotFoundError:
            if os.path.islink(existing):
                return f"cannot be created: {existing} is a broken symbolic link"
            existing, missing = os.path.dirname(existing), existing
        except NotADirectoryError:
            return f"cannot be created: {_blocking_component(existing)} is not a directory"
        except (OSError, ValueError) as e:
            return f"cannot be reached ({_reason(e)})"
    if not stat.S_ISDIR(st.st_mode):
        return ("exists and is not a directory" if missing is None
                else f"cannot be created: {existing} is not a directory")
    fs = _pseudo_filesystem(os.path.realpath(existing))
    if fs is not None:
        return f"is on a {fs} filesystem (a kernel interface), not a place for traces"
    if missing is not None:  # make the first missing folder and remove it again
        try:
            os.mkdir(missing)
        except FileExistsError:
            return None  # made meanwhile, by someone else
        except OSError as e:
            return f"cannot be created ({_reason(e)})"
        os.rmdir(missing)
        return None
    if not os.access(existing, os.W_OK | os.X_OK):
        return "is a directory that is not writable"
    return None


def write_outputs(outputs: Iterable[tuple[str, str | None, Callable[[str], object]]]) -> list[str]:
    """Call ``write(path)`` for each ``(option, path, write)`` with a path; return a
    message for each that failed (every one is tried)."""
    failed = []
    for flag, path, write in outputs:
        if path is None:
            continue
        try:
            write(path)
        except OSError as e:  # anything else is a bug (exit 70)
            failed.append(f"{flag} {path}: not written ({_reason(e)}).")
    return failed


# -- helpers -----------------------------------------------------------------------------

def _creatable(path: str) -> str | None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(parent)
    except FileNotFoundError:
        return f"its folder {parent} does not exist"
    except NotADirectoryError:
        return f"cannot be created: {_blocking_component(parent)} is not a directory"
    except (OSError, ValueError) as e:
        return f"its folder {parent} cannot be reached ({_reason(e)})"
    if not stat.S_ISDIR(st.st_mode):
        return f"cannot be created: {parent} is not a directory"
    fs = _pseudo_filesystem(os.path.realpath(parent))
    if fs is not None:
        return f"is on a {fs} filesystem (a kernel interface), not a place for a report"
    try:  # exclusive: never an existing file; removed at once
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        return None  # created meanwhile: written over at the end, as any existing file
    except OSError as e:
        return f"cannot be created in {parent} ({_reason(e)})"
    os.close(fd)
    os.unlink(path)
    return None


def _blocking_component(path: str) -> str:
    """The first component of ``path`` that exists and is not a directory."""
    current = os.path.abspath(path)
    chain = []
    while True:
        chain.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for part in reversed(chain):
        if os.path.exists(part) and not os.path.isdir(part):
            return part
    return path


def _held_open(st: os.stat_result) -> bool:
    """Whether this process holds ``st``'s file open already (its stdout, its stderr, a
    pipe the shell passed for ``>(...)``): writing there is what the user asked for."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            try:
                held = os.fstat(int(name))
            except (OSError, ValueError):
                continue
            if (held.st_dev, held.st_ino) == (st.st_dev, st.st_ino):
                return True
        return False
    return False


def _pseudo_filesystem(path: str) -> str | None:
    """The type of the kernel pseudo-filesystem ``path`` lies on (Linux), else None."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None  # not Linux
    best, kind = "", None
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        mount = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1]
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fstype
    return kind if kind in PSEUDO_FILESYSTEMS else None


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a path as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)
