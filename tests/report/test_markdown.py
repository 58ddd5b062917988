"""The Markdown report's Reproduce command replays with the same options that decide the verdict."""

from __future__ import annotations

import shlex

from xentdbg.compare.result import CompareConfig, CompareResult
from xentdbg.data import DataSpec
from xentdbg.records import CaptureMode, SideInfo
from xentdbg.report.markdown import reproduce_command


def result(**config) -> CompareResult:
    info = SideInfo("JaxLoop", {}, [], [])
    cfg = CompareConfig("a.py", "b.py:setup", data=DataSpec(subset=300, batch_size=100), steps=3, **config)
    return CompareResult(cfg, info, info, [], [], {})


def test_reproduce_keeps_calibrate_and_fingerprint():
    args = shlex.split(reproduce_command(result(calibrate=True, capture=CaptureMode.FINGERPRINT)))
    assert "--calibrate" in args and "--fingerprint" in args
    assert args[:4] == ["xentdbg", "compare", "a.py", "b.py:setup"]
    assert args[args.index("--batch-size") + 1] == "100" and args[args.index("--steps") + 1] == "3"


def test_reproduce_plain_run_adds_neither():
    args = shlex.split(reproduce_command(result()))
    assert "--calibrate" not in args and "--fingerprint" not in args
