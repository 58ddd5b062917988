"""The package's import graph: every arrow points down the layers, and no module cycle.

Read from the source (every ``import``, including those inside functions and under
``TYPE_CHECKING``), so it is fast and sees the lazy imports a running process may never
reach. ``xentdbg/__init__.py`` is the public facade and may import from any layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xentdbg"

# Lowest first. A module may import from its own package and from lower layers only.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"version", "errors", "findings", "setups", "_exit", "paths"}),
    frozenset({"records", "data"}),
    frozenset({"compare", "losses"}),
    frozenset({"diagnose"}),
    frozenset({"trace", "adapters"}),
    frozenset({"report"}),
    frozenset({"replay"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(unit: str) -> int:
    return next(k for k, units in enumerate(LAYERS) if unit in units)


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_module_has_a_layer():
    units = {_unit(m) for m in _modules()} - {""}
    placed = set().union(*LAYERS)
    assert units <= placed, f"place these in LAYERS: {sorted(units - placed)}"


def test_no_arrow_runs_up_or_sideways():
    wrong = []
    for module, targets in graph().items():
        if module == "xentdbg":
            continue  # the facade
        for target in targets:
            src, dst = _unit(module), _unit(target)
            if dst == "":
                wrong.append(f"{module} -> {target} (the facade: import from the defining module)")
            elif src != dst and _layer(dst) >= _layer(src):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    edges = {m: {t for t in ts if t != "xentdbg"} for m, ts in graph().items() if m != "xentdbg"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
