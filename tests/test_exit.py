"""How xentdbg's child processes end (:mod:`xentdbg._exit`)."""

from __future__ import annotations

import pytest

from xentdbg import _exit


def test_kept_until_exit_only_in_a_process_that_ends_with_fast_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Elsewhere keeping an object would only move its destruction (None); once declared,
    one list for the process's life."""
    monkeypatch.setattr(_exit, "_KEPT", None)
    assert _exit.kept_until_exit() is None
    _exit.ends_with_fast_exit()
    kept = _exit.kept_until_exit()
    assert kept == []
    kept.append("iterator")
    _exit.ends_with_fast_exit()  # declared again: the same list, items kept
    assert _exit.kept_until_exit() is kept and kept == ["iterator"]
