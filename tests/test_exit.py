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


def test_a_replay_worker_declares_that_it_ends_with_fast_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``worker.main`` declares it before serving, so its ``KerasFit`` keeps fit's iterators."""
    from xentdbg.replay import worker

    class Exited(Exception):
        pass

    def fast_exit(code: int) -> None:
        raise Exited(code)

    seen: list[object] = []
    monkeypatch.setattr(_exit, "_KEPT", None)
    monkeypatch.setattr(_exit, "fast_exit", fast_exit)
    monkeypatch.setattr(worker, "tie_to_parent", lambda: None)
    monkeypatch.setattr(worker, "serve", lambda *fds: seen.append(_exit.kept_until_exit()) or 0)
    with pytest.raises(Exited):
        worker.main(["0", "1"])
    assert seen == [[]]  # declared before serve ran
