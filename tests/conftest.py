"""Shared helpers: run the real CLI in a subprocess and read its JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASE1 = ROOT / "examples" / "case1_bce"
SETUPS = Path(__file__).resolve().parent / "setups"


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    report: dict | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, tmp_path: Path, env: dict | None = None, timeout: float = 240) -> CliRun:
    """``python -m xentdbg ARGS --json FILE`` in a subprocess, from the repository root."""
    report = tmp_path / f"report-{abs(hash(args))}.json"
    cmd = [sys.executable, "-m", "xentdbg", *args]
    if args and args[0] == "compare":
        cmd += ["--json", str(report)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "COLUMNS": "160", **(env or {})})
    data = json.loads(report.read_text()) if report.exists() else None
    return CliRun(proc.returncode, proc.stdout, proc.stderr, data)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xentdbg")


EXAMPLES = ROOT / "examples"


def example_pairs() -> dict[tuple[str, str], dict]:
    """Every pair of every ``examples/<topic>/pairs.json``: ``(topic, name) -> entry``."""
    pairs = {}
    for index in sorted(EXAMPLES.glob("*/pairs.json")):
        for name, entry in json.loads(index.read_text()).items():
            pairs[(index.parent.name, name)] = entry
    return pairs


_PAIR_RUNS: dict[tuple[str, str], CliRun] = {}


def run_pair(topic: str, name: str, tmp_path: Path) -> CliRun:
    """``xentdbg compare`` on one example pair, with its ``args``; run once per session, so
    the test that checks a pair's exit code and the tests that read its report share it."""
    if (topic, name) not in _PAIR_RUNS:
        entry = example_pairs()[(topic, name)]
        folder = EXAMPLES / topic
        _PAIR_RUNS[(topic, name)] = run_cli("compare", str(folder / entry["a"]), str(folder / entry["b"]),
                                            *entry.get("args", []), tmp_path=tmp_path)
    return _PAIR_RUNS[(topic, name)]
