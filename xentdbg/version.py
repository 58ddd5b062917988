"""The xentdbg version and the runtime versions a report records.

This module imports nothing from xentdbg, so any layer may use it (``pyproject.toml``
reads the version from here).
"""

from __future__ import annotations

import platform

__version__ = "0.1.0"

def runtime_versions() -> dict[str, str]:
    """The coordinator's own versions: xentdbg and Python (each side's come from its worker)."""
    return {"xentdbg": __version__, "python": platform.python_version()}
