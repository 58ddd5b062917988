"""Pair up the tensors of two setups: parameters by order and shape, activations by structure."""

from __future__ import annotations

from dataclasses import dataclass

from xentdbg.records import TensorSpec


@dataclass(frozen=True)
class Matching:
    """Result of matching two tensor tables. ``pairs`` is ``[(i_a, i_b)]`` in A's order."""

    pairs: list[tuple[int, int]]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def match_by_order(a: list[TensorSpec], b: list[TensorSpec]) -> Matching:
    """Pair the i-th tensor of A with the i-th of B; shapes must agree (dtypes may differ:
    a float64 vs float32 mismatch is compared, and reported, not refused)."""
    problems = []
    if len(a) != len(b):
        problems.append(f"A has {len(a)} tensors, B has {len(b)}")
    for i, (ta, tb) in enumerate(zip(a, b)):
        if ta.shape != tb.shape:
            problems.append(f"#{i}: {ta.name} {ta.shape} vs {tb.name} {tb.shape}")
    pairs = [(i, i) for i in range(min(len(a), len(b)))]
    return Matching(pairs=pairs if not problems else [], problems=problems)


def match_activations(a: list[tuple[str, tuple]], b: list[tuple[str, tuple]]) -> Matching:
    """Pair layer outputs ``(name, shape)`` of two models.

    Same number of layers with the same shapes: one to one. Otherwise layers are grouped
    into runs of equal output shape and the last output of each run is paired, so
    ``Dense(1000, activation="relu")`` pairs with stax ``Dense(1000), Relu``. If the runs
    still differ, no activation is compared (the problem says why).
    """
    if [s for _, s in a] == [s for _, s in b]:
        return Matching([(i, i) for i in range(len(a))], [])
    ga, gb = _run_ends(a), _run_ends(b)
    if [a[i][1] for i in ga] == [b[i][1] for i in gb]:
        return Matching(list(zip(ga, gb)), [])
    return Matching([], [f"layer output shapes differ: A {[s for _, s in a]} vs B {[s for _, s in b]}"])


def _run_ends(layers: list[tuple[str, tuple]]) -> list[int]:
    ends = []
    for i, (_, shape) in enumerate(layers):
        if i + 1 == len(layers) or layers[i + 1][1] != shape:
            ends.append(i)
    return ends
