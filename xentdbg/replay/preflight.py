"""What every command checks first, before a worker starts or a trace is read: numbers
that must be finite, input files, and every output it will write at the end
(:mod:`xentdbg.paths`). A problem is a :class:`~xentdbg.errors.UsageError` (exit 2), raised
in a second instead of after the whole run."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

from xentdbg.errors import EXIT_USAGE, OutputError, UsageError
from xentdbg.paths import file_problem, folder_problem, output_problem

TRACE_FILES = ("a.h5", "b.h5")
"""What ``compare --save-traces DIR`` writes into ``DIR`` (:func:`xentdbg.replay.engine._open_traces`)."""


MAX_SECONDS = 1e6
"""The longest timeout taken (11.6 days): ``select``/``poll`` refuse more than about 24.8
days (2**31 ms), which ``inf`` and ``1e300`` pass typer's bounds to reach."""


def preflight(*, numbers: Mapping[str, float | None] | None = None, timeouts: Mapping[str, float | None] | None = None,
              inputs: Mapping[str, str | None] | None = None, outputs: Mapping[str, str | None] | None = None,
              trace_folders: Mapping[str, str | None] | None = None, keep: Mapping[str, str | None] | None = None,
              ) -> None:
    """Raise :class:`UsageError` for the first problem found (:class:`OutputError` for an output).

    ``numbers``: option -> value (None: not given), each must be finite (``inf`` passes
    typer's bounds). ``timeouts``: option -> seconds, at most :data:`MAX_SECONDS`.
    ``inputs``: label -> path of a file to read. ``outputs``: option -> report file.
    ``trace_folders``: option -> a folder for :data:`TRACE_FILES`. ``keep``: label ->
    other files the command reads (a setup ``path.py[:function]``, ``--data``), which no
    output may overwrite, no more than an input."""
    for flag, value in (numbers or {}).items():
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} {value}: give a finite number.")
    for flag, value in (timeouts or {}).items():
        if value is not None and not value <= MAX_SECONDS:  # nan too
            raise UsageError(f"{flag} {value:g}: give at most {MAX_SECONDS:g} seconds.",
                             hint="Leave --step-timeout out for no time limit." if flag == "--step-timeout" else None)
    for label, path in (inputs or {}).items():
        problem = file_problem(path) if path is not None else None
        if problem is not None:
            raise UsageError(f"{label} {path}: {problem}.")
    check_outputs((outputs or {}).items(), (trace_folders or {}).items(), TRACE_FILES)
    _check_overwrites({**(inputs or {}), **(keep or {})}, outputs or {}, trace_folders or {})


def check_interpreters(pythons: Mapping[str, tuple[str | None, Mapping[str, str]]]) -> dict[str, dict[str, str]]:
    """Check each ``--python-a/--python-b/--python`` given (option -> (path or None, the
    side's ``--env`` overrides)) before a worker starts: it exists, runs, is Python 3.11 or
    newer and can import this xentdbg and numpy, about a second each
    (:func:`xentdbg.replay.interpreter.check`; a :class:`UsageError`, exit 2, says what is
    wrong). Returns option -> the env entry that runs that side under it
    (``{XENTDBG_PYTHON: absolute path}``, :data:`~xentdbg.report.sides.PYTHON_ENV`;
    ``{}`` where none was given), to merge into the side's env."""
    from xentdbg.replay.interpreter import check
    from xentdbg.report.sides import PYTHON_ENV

    return {flag: {PYTHON_ENV: check(path, flag, env)} if path is not None else {}
            for flag, (path, env) in pythons.items()}


def _check_overwrites(read: Mapping[str, str | None], outputs: Mapping[str, str | None],
                      folders: Mapping[str, str | None]) -> None:
    """No output may be a file the command reads, or another output (a regular file: a
    character device or a pipe may take several)."""
    written = [(flag, path) for flag, path in outputs.items() if path is not None]
    written += [(flag, os.path.join(path, name)) for flag, path in folders.items() if path is not None
                for name in TRACE_FILES]
    seen: dict[str, str] = {}
    for flag, path in written:
        if os.path.exists(path) and not os.path.isfile(path):
            continue  # /dev/null, /dev/stdout, >(...): as often as asked
        where = os.path.realpath(path)
        if where in seen and seen[where] != flag:
            raise OutputError(f"{seen[where]} and {flag} name the same file, {path}.")
        seen[where] = flag
        for label, source in read.items():
            for candidate in _file_of(source):
                if os.path.exists(path) and os.path.exists(candidate) and os.path.samefile(path, candidate):
                    raise OutputError(f"{flag} {path} is {label}: it would be overwritten.",
                                     hint="Write the report somewhere else.")


def _file_of(source: str | None) -> list[str]:
    """The file a value names: itself, or ``path`` of ``path:name`` (a setup's function)."""
    if not source:
        return []
    head, sep, _ = source.rpartition(":")
    return [source, head] if sep and head else [source]


def check_outputs(files: Iterable[tuple[str, str | None]], folders: Iterable[tuple[str, str | None]] = (),
                  folder_files: tuple[str, ...] = ()) -> None:
    """Raise one :class:`OutputError` naming every output that cannot be written.

    ``files``: ``(option, path)`` of report files (a None path: the option was not given).
    ``folders``: ``(option, path)`` of output folders, each of which will receive
    ``folder_files`` (``a.h5``, ``b.h5``), checked as files where the folder exists."""
    problems, hints = [], []
    for flag, path in files:
        if path is not None and (problem := output_problem(path)) is not None:
            problems.append(f"{flag} {path}: {problem}.")
            hints = ["Give a file in an existing folder you can write to."]
    for flag, path in folders:
        if path is None:
            continue
        problem = folder_problem(path)
        if problem is None and os.path.isdir(path):
            for name in folder_files:
                inner = output_problem(os.path.join(path, name))
                if inner is not None:
                    problem = f"{name} there {inner}"
                    break
        if problem == "exists and is not a directory" and folder_files:
            problem += f" (it names a folder, to hold {' and '.join(folder_files)})"
        if problem is not None:
            problems.append(f"{flag} {path}: {problem}.")
            hints.append(f"{flag} names a folder (made if missing) for {' and '.join(folder_files) or 'its files'}.")
    if problems:
        message = problems[0] if len(problems) == 1 else "Outputs that cannot be written: " + " ".join(problems)
        raise OutputError(message, hint=" ".join(["Nothing was run.", *hints]))


def exit_after_writing(code: int, failed: list[str]) -> int:
    """The exit code of a run whose reports in ``failed`` could not be written: 2 in place
    of a verdict of 0 or 1 (as ``diff`` and ``cmp`` answer "trouble"), else ``code``."""
    return max(code, EXIT_USAGE) if failed else code
