"""What every report says about the interpreter and library versions each side ran under.

A worker adds to its :attr:`~xentdbg.records.SideInfo.framework` the interpreter it
runs (``executable``) and the version of each library in :data:`VERSION_KEYS` that the
setup imported (:func:`xentdbg.replay.worker.runtime_versions`), so that a comparison
across two interpreters (``--python-a/--python-b``: another virtual environment, other
TensorFlow, Keras or JAX versions) shows both sides' full version set. Results and
traces written before carry fewer keys: each function here shows what is there.
"""

from __future__ import annotations

from collections.abc import Mapping

from xentdbg.records import replica_count

PYTHON_ENV = "XENTDBG_PYTHON"
"""The key of a side's ``env`` that names the Python its worker runs under:
``--python-a PATH`` is ``--env-a XENTDBG_PYTHON=PATH`` (:mod:`xentdbg.replay.interpreter`
starts the worker with it). Defined here, the lowest layer that reads it: the reports
show it as the interpreter, not among the environment overrides."""

VERSION_KEYS = ("python", "tensorflow", "keras", "tf_keras", "jax", "jaxlib", "flax", "optax", "numpy")
"""The versions a report lists per side, in this order (those the side's worker reported)."""

_NAMES = {"python": "Python", "tensorflow": "TensorFlow", "keras": "Keras", "tf_keras": "tf_keras", "jax": "JAX",
          "jaxlib": "jaxlib", "flax": "Flax", "optax": "optax", "numpy": "numpy"}


IMPORTED = "imported"
"""The framework key under which a worker lists, comma-separated, the libraries it added
(imported by the setup, not reported by the adapter): a TensorFlow side whose setup
imported JAX ran nothing on JAX."""


def ran_with(framework: Mapping[str, object]) -> set[str]:
    """The :data:`VERSION_KEYS` the side's adapter reported: the libraries that ran it."""
    imported = set(str(framework.get(IMPORTED, "")).split(","))
    return {k for k in VERSION_KEYS if k in framework and k not in imported}


def versions(framework: Mapping[str, object]) -> dict[str, str]:
    """The side's versions, :data:`VERSION_KEYS` order, those reported only."""
    return {k: str(framework[k]) for k in VERSION_KEYS if framework.get(k) not in (None, "")}


def interpreter(framework: Mapping[str, object], env: Mapping[str, str]) -> str | None:
    """The Python the side ran under: what its worker reported (``sys.executable``), else
    the one its ``env`` asked for (:data:`PYTHON_ENV`), else None (an older result)."""
    executable = framework.get("executable")
    return str(executable) if executable else env.get(PYTHON_ENV)


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """The side's environment overrides other than the interpreter (:data:`PYTHON_ENV`)."""
    return {k: v for k, v in env.items() if k != PYTHON_ENV}


def version_text(framework: Mapping[str, object], shown: tuple[str, ...] = ()) -> str:
    """``Python 3.11.7 · numpy 2.4.6 · jaxlib 0.10.2``: the versions not in ``shown``."""
    return " · ".join(f"{_NAMES[k]} {v}" for k, v in versions(framework).items() if k not in shown)


def parallel(framework: Mapping[str, object]) -> str | None:
    """``4 replicas (MirroredStrategy)`` for a side that trained data-parallel (its adapter
    reports ``replicas`` and ``strategy``), None on one device."""
    replicas = replica_count(framework)
    if replicas < 2:
        return None
    strategy = framework.get("strategy")
    return f"{replicas} replicas" + (f" ({strategy})" if strategy else "")
