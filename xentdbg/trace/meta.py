"""The metadata a trace carries: enough to know where it came from and to reproduce it."""

from __future__ import annotations

import datetime
import platform
import shlex
import sys
from typing import Any

from xentdbg.data import DataSpec
from xentdbg.records import SideInfo
from xentdbg.version import __version__


def trace_meta(setup: str, setup_sha256: str | None, env: dict[str, str], data: DataSpec, info: SideInfo, steps: int,
               every: int = 1) -> dict[str, Any]:
    """Versions, devices, environment overrides, data, setup (``path[:function]`` and the
    file's content hash), command line."""
    return {
        "xentdbg": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "kind": info.kind,
        "frameworks": {k: v for k, v in info.framework.items() if k not in ("python", "platform", "devices")},
        "devices": info.framework.get("devices", ""),
        "env": env,
        "data": data.to_dict(),
        "setup": setup,
        "setup_sha256": setup_sha256,
        "steps": steps,
        "every": every,
        "command": shlex.join([_program_name(sys.argv[0]), *sys.argv[1:]]) if sys.argv else "",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _program_name(arg0: str) -> str:
    """``xentdbg`` rather than the absolute path of the console script."""
    return "xentdbg" if arg0.endswith(("xentdbg", "__main__.py")) else arg0
