"""Errors that end a run with a message instead of a traceback, and their exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_SETUP_FAILED = 3


class XentdbgError(Exception):
    """Base class: an error the user can act on. ``hint`` says what to do next."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail  # extra text (a table, a traceback) shown below the message


class UsageError(XentdbgError):
    """Bad command line, setup path, data file or mismatched setups (exit 2)."""

    exit_code = EXIT_USAGE


class OutputError(UsageError):
    """An output that cannot or must not be written, found before the run (exit 2). Nothing
    is written then, not even the error to ``--json``."""


class SetupFailed(XentdbgError):
    """A setup raised, crashed, or its worker died (exit 3)."""

    exit_code = EXIT_SETUP_FAILED

    def __init__(self, message: str, *, side: str, step: int | None = None,
                 hint: str | None = None, detail: str | None = None):
        super().__init__(message, hint=hint, detail=detail)
        self.side = side
        self.step = step


class ParameterMismatch(UsageError):
    """The two setups' parameter tables cannot be paired (exit 2). Carries both tables."""

    def __init__(self, message: str, *, table_a: list, table_b: list, problems: list[str],
                 labels: tuple[str, str] = ("A", "B")):
        super().__init__(message, hint="Parameters pair layer by layer, kernel with kernel, with shapes equal up to "
                                       "axes of size 1. Map what stays unpaired or ambiguous explicitly with "
                                       "--pair FILE (JSON: {\"A name\": \"B name\"}); or build the same "
                                       "architecture on both sides.")
        self.table_a, self.table_b, self.problems, self.labels = table_a, table_b, problems, labels


class UnsupportedLibrary(UsageError):
    """An installed library version xentdbg's capture was not written for, or a library
    internal it relies on that is missing (exit 2). ``hint`` names the tested range."""
