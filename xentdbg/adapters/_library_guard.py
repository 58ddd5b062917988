"""Version ranges and missing-internal errors for the private-access modules.

``_keras_private``, ``_tf_keras_private`` (and any future ``_*_private``) rely on library
internals that can change in any release. Each checks, once when first used, that the
installed version lies in the range it was written for, and each accessor checks that
the internal it reads exists; both failures raise :class:`UnsupportedLibrary` (exit 2)
with a hint naming the tested range. This module imports no framework.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from typing import Any

from xentdbg.errors import UnsupportedLibrary


@dataclass(frozen=True)
class VersionRange:
    """``library >= minimum, < below``, compared on (major, minor)."""

    library: str  # the distribution and module name, as pip and ``import`` spell it
    minimum: tuple[int, int]
    below: tuple[int, int]

    @property
    def spec(self) -> str:
        """The range in pip's syntax, e.g. ``>=3.15,<3.16``."""
        return f">={self.minimum[0]}.{self.minimum[1]},<{self.below[0]}.{self.below[1]}"

    @property
    def hint(self) -> str:
        return (f"xentdbg's capture was written and tested for {self.library}{self.spec}; "
                f"install a version in that range: pip install '{self.library}{self.spec}'.")


def major_minor(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a version string (``"3.15.1"``, ``"3.16.0rc1"``,
    ``"2.21.0.dev20250101"``), or None when it does not start with two numbers."""
    match = re.match(r"\s*v?(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_range(tested: VersionRange, version: str) -> None:
    """Raise :class:`UnsupportedLibrary` unless ``version`` lies in ``tested``."""
    parsed = major_minor(version)
    if parsed is None or not tested.minimum <= parsed < tested.below:
        raise UnsupportedLibrary(
            f"{tested.library} {version} is installed; xentdbg's capture relies on {tested.library} "
            f"internals and supports {tested.library}{tested.spec} only.",
            hint=tested.hint)


def installed_version(library: str) -> str:
    """The version of ``library``: the imported module's ``__version__`` when it is
    imported (what actually runs), else the installed distribution's, read without
    importing the library (importing Keras imports TensorFlow)."""
    module = sys.modules.get(library)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


@functools.cache
def checked_version(tested: VersionRange) -> str:
    """The installed version of ``tested.library``, checked against ``tested`` on the first
    call (:class:`UnsupportedLibrary` when outside it)."""
    version = installed_version(tested.library)
    check_range(tested, version)
    return version


def missing_internal(tested: VersionRange, version: str, internal: str, where: str,
                     on: object | None = None) -> UnsupportedLibrary:
    """The error for an internal (``internal``, defined at ``where``) that ``version`` of
    ``tested.library`` lacks; ``on``: the object it was looked up on."""
    found_on = f" (looked up on a {type(on).__name__})" if on is not None else ""
    return UnsupportedLibrary(
        f"{tested.library} {version}: the internal {internal} that xentdbg's capture relies on "
        f"is missing{found_on}; it was written against {where}.",
        hint=tested.hint)


def internal_attr(tested: VersionRange, obj: object, name: str, internal: str, where: str) -> Any:
    """``obj.<name>``, after the version check of ``tested.library``; :class:`UnsupportedLibrary`
    naming ``internal`` (defined at ``where``) when ``obj`` lacks it."""
    version = checked_version(tested)
    if not hasattr(obj, name):
        raise missing_internal(tested, version, internal, where, on=obj)
    return getattr(obj, name)
