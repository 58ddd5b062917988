"""The metadata a trace carries: enough to know where it came from and to reproduce it."""

from __future__ import annotations

import datetime
import platform
import shlex
import sys

from xentdbg import __version__
from xentdbg.data import DataSpec
from xentdbg.records import SideInfo
from xentdbg.replay.loading import SetupRef


def trace_meta(ref: SetupRef, env: dict[str, str], data: DataSpec, info: SideInfo, steps: int,
               every: int = 1) -> dict:
    """Versions, devices, environment overrides, data, setup (path and content hash), command line."""
    return {
        "xentdbg": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "kind": info.kind,
        "frameworks": {k: v for k, v in info.framework.items() if k not in ("python", "platform", "devices")},
        "devices": info.framework.get("devices", ""),
        "env": env,
        "data": data.to_dict(),
        "setup": str(ref),
        "setup_sha256": ref.content_hash(),
        "steps": steps,
        "every": every,
        "command": shlex.join([_program_name(sys.argv[0]), *sys.argv[1:]]) if sys.argv else "",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _program_name(arg0: str) -> str:
    """``xentdbg`` rather than the absolute path of the console script."""
    return "xentdbg" if arg0.endswith(("xentdbg", "__main__.py")) else arg0
