"""Turn ``path/to/file.py:name`` (or ``package.module:name``) into a setup function."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xentdbg.data.declared import check_declared
from xentdbg.errors import UsageError
from xentdbg.paths import file_problem

DEFAULT_FUNCTION = "setup"


@dataclass(frozen=True)
class SetupRef:
    """Where a setup lives. ``target`` is a ``.py`` path or a dotted module name."""

    target: str
    function: str = DEFAULT_FUNCTION

    @classmethod
    def parse(cls, text: str) -> SetupRef:
        target, sep, function = text.rpartition(":")
        if not sep or not function.isidentifier():  # no ":name", or a Windows drive letter
            target, function = text, DEFAULT_FUNCTION
        if not target:
            raise UsageError(f"Setup {text!r} names no file or module.",
                             hint="Write path/to/file.py:function, e.g. examples/case1_bce/keras_fit.py:setup.")
        return cls(target, function)

    def __str__(self) -> str:
        return f"{self.target}:{self.function}"

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py") or "/" in self.target

    def check(self) -> None:
        """Cheap checks the coordinator runs before starting any worker."""
        problem = file_problem(self.target) if self.is_file else None
        if problem == "no such file":
            raise UsageError(f"Setup file {self.target} does not exist.",
                             hint="Give a path relative to the current directory, "
                                  "e.g. examples/case1_bce/keras_fit.py.")
        if problem is not None:
            raise UsageError(f"Setup file {self.target} {problem}.",
                             hint="Give the .py file that defines the setup function, "
                                  "e.g. examples/case1_bce/keras_fit.py.")

    def content_hash(self) -> str | None:
        if self.is_file and Path(self.target).is_file():
            return hashlib.sha256(Path(self.target).read_bytes()).hexdigest()[:16]
        return None


OPTIONAL_EXTRAS = {"tf_keras": "legacy"}


def missing_module(error: ModuleNotFoundError, ref: SetupRef) -> UsageError:
    """A package the setup imports is not installed: an environment problem (exit 2)."""
    top = (error.name or "").split(".")[0]
    extra = OPTIONAL_EXTRAS.get(top)
    hint = (f"Install the {extra} extra: pip install 'xentdbg[{extra}]'." if extra
            else f"Install {top} in the environment that runs xentdbg.")
    return UsageError(f"{ref} imports {top}, which is not installed.", hint=hint)


def load_function(ref: SetupRef) -> Callable:
    """Import the module and return the setup function (in a worker process)."""
    ref.check()
    if ref.is_file:
        path = Path(ref.target).resolve()
        name = f"xentdbg_setup_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"Cannot import {ref.target} as Python.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent))  # let the setup import its neighbours
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as e:
            raise missing_module(e, ref) from None
    else:
        try:
            module = importlib.import_module(ref.target)
        except ModuleNotFoundError as e:
            if e.name and ref.target.startswith(e.name):
                raise UsageError(f"No module named {ref.target!r}.",
                                 hint="Give a .py path or an importable module name.") from None
            raise
    fn = getattr(module, ref.function, None)
    if fn is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                        and getattr(v, "__module__", None) == module.__name__)
        raise UsageError(f"{ref.target} has no function {ref.function!r}.",
                         hint=f"Functions defined there: {', '.join(public) or 'none'}.")
    if not callable(fn):
        raise UsageError(f"{ref} is a {type(fn).__name__}, not a function.")
    return fn


MAX_SETUP_SOURCE = 8 << 20
"""A setup file larger than this is not parsed for a declaration (8 MiB)."""


def declared_data(ref: SetupRef, label: str) -> dict[str, Any]:
    """The data the setup function declares with ``@xentdbg.declare(...)``
    (:mod:`xentdbg.data.declared`), read from its source without running it; ``{}`` when it
    declares none, or when its source cannot be found without importing it. ``label``
    names the side in errors ("setup A")."""
    path = _source_path(ref)
    if path is None:
        return {}
    try:
        if path.stat().st_size > MAX_SETUP_SOURCE:
            return {}
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return {}  # the worker that imports it will report what is wrong, as before
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                 and n.name == ref.function), None)
    if node is None:
        return {}
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call) or _dotted(decorator.func).rpartition(".")[2] != "declare":
            continue
        where = f"{label} ({ref})"
        if decorator.args or any(k.arg is None for k in decorator.keywords):
            raise UsageError(f"{where}: xentdbg.declare takes keyword arguments only.",
                             hint="Example: @xentdbg.declare(task=\"digits\", layout=\"28x28x1\").")
        values: dict[str, Any] = {}
        for k in decorator.keywords:
            try:
                values[str(k.arg)] = ast.literal_eval(k.value)
            except ValueError:
                raise UsageError(f"{where} declares {k.arg} with an expression ({ast.unparse(k.value)}).",
                                 hint="Declarations are read without running the file: write literals, "
                                      "e.g. batch_size=128.") from None
        return check_declared(values, where)
    return {}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _source_path(ref: SetupRef) -> Path | None:
    if ref.is_file:
        path = Path(ref.target)
        return path if path.is_file() else None
    try:
        spec = importlib.util.find_spec(ref.target)  # imports the parent packages, not the module
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


PRELOADABLE = ("tensorflow", "keras", "tf_keras", "jax", "flax", "optax")
"""The frameworks a fork server may import before it forks a setup's worker
(:mod:`xentdbg.replay.forkserver`)."""
_HARMLESS = frozenset(sys.stdlib_module_names) | {"numpy", "xentdbg"}
"""Imports the scan of :func:`preload_modules` passes over: they run no user code that
could change how a framework imports."""


def preload_modules(ref: SetupRef, depth: int = 3) -> list[str]:
    """The framework modules (:data:`PRELOADABLE`) the setup's module imports before it
    runs a statement of its own, in the order it imports them.

    A fork server imports these before the worker loads the setup (from the same
    environment, the same working directory), so a forked worker's frameworks are in the
    state they would reach in a fresh worker: nothing of the user's ran before them. The
    scan reads the module's leading block of imports (after its docstring and
    ``from __future__``), following imports of modules beside it (``import common``) up
    to ``depth`` files deep, and stops at the first statement that is not an import, or
    an import of anything that is not the standard library, numpy, xentdbg, a framework
    or such a neighbour (a package that might set ``XLA_FLAGS`` on import). Modules the
    setup imports later, or from a function, are imported by the worker itself, as
    before. Nothing is run; ``[]`` when the source cannot be read."""
    path = _source_path(ref)
    if path is None:
        return []
    out: list[str] = []
    _scan_leading_imports(path, out, depth, set())
    return out


def _scan_leading_imports(path: Path, out: list[str], depth: int, seen: set[Path]) -> bool:
    """Append ``path``'s leading framework imports to ``out``; False where the scan must
    stop (a statement of the user's runs next)."""
    try:
        if path.stat().st_size > MAX_SETUP_SOURCE:
            return False
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return False
    seen.add(path)
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            return False
        for name in names:
            root = name.partition(".")[0]
            neighbour = path.parent / f"{root}.py"
            if root in PRELOADABLE:
                if name not in out:
                    out.append(name)
            elif neighbour.is_file():
                if neighbour in seen:
                    continue  # imported once already: Python runs it once
                if depth <= 1 or not _scan_leading_imports(neighbour, out, depth - 1, seen):
                    return False
            elif root not in _HARMLESS:
                return False
    return True
