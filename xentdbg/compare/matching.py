"""Pair up the layer outputs of two setups by structure (parameters: :mod:`xentdbg.compare.params`)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Matching:
    """Result of matching two tensor tables. ``pairs`` is ``[(i_a, i_b)]`` in A's order."""

    pairs: list[tuple[int, int]]
    problems: list[str]
    unpaired: list[str] = field(default_factory=list)  # tensors left out of an alignment, "A name (shape)"

    @property
    def ok(self) -> bool:
        return not self.problems


def match_activations(a: list[tuple[str, tuple]], b: list[tuple[str, tuple]]) -> Matching:
    """Pair layer outputs ``(name, shape)`` of two models.

    1. Same number of layers with the same shapes: one to one.
    2. Layers are grouped into runs of equal output shape and the last output of each run
       is kept, so ``Dense(1000, activation="relu")`` pairs with stax ``Dense(1000), Relu``.
    3. The run ends are aligned as ``diff`` aligns lines (:class:`difflib.SequenceMatcher`
       on the shapes, in order): an output whose shape has no partner is a layer one side
       inserted (a ``Rescaling`` or ``Reshape`` in front, a transpose before ``Flatten``)
       and is listed in ``unpaired``; the others are compared. A weighted layer changes
       the shape it is given only as its partner does, so layers with weights pair up.
    If nothing pairs, no activation is compared (the problem says why).
    """
    if [s for _, s in a] == [s for _, s in b]:
        return Matching([(i, i) for i in range(len(a))], [])
    ga, gb = _run_ends(a), _run_ends(b)
    sa, sb = [a[i][1] for i in ga], [b[i][1] for i in gb]
    if sa == sb:
        return Matching(list(zip(ga, gb)), [])
    blocks = difflib.SequenceMatcher(None, sa, sb, autojunk=False).get_matching_blocks()
    pairs = [(ga[i + k], gb[j + k]) for i, j, n in blocks for k in range(n)]
    if not pairs:
        return Matching([], [f"layer output shapes differ: A {[s for _, s in a]} vs B {[s for _, s in b]}"])
    paired_a, paired_b = {i for i, _ in pairs}, {j for _, j in pairs}
    unpaired = ([f"A {a[i][0]} {a[i][1]}" for i in ga if i not in paired_a] +
                [f"B {b[j][0]} {b[j][1]}" for j in gb if j not in paired_b])
    return Matching(pairs, [], unpaired)


def _run_ends(layers: list[tuple[str, tuple]]) -> list[int]:
    ends = []
    for i, (_, shape) in enumerate(layers):
        if i + 1 == len(layers) or layers[i + 1][1] != shape:
            ends.append(i)
    return ends
