"""The wiring of a graph ModelSpec: which nodes feed each node, checked once.

A spec's nodes run in list order. Node ``i`` takes the outputs of ``inputs[i]`` (node names,
or ``"input"`` for the model's input); a node that names no inputs takes the node before it
(the model's input for the first), so a sequential spec is the graph with no names at all.
The last node's output is the model's output, and every other node must feed a later one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import SpecError

INPUT = "input"  # the model's input, as a node's input name
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _cycle(start: str, by_name: dict[str, int], inputs: Sequence[Sequence[str]]) -> list[str] | None:
    """A path of names from ``start`` back to itself along the inputs, if there is one."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> bool:
        if name == start and path:
            return True
        if name in seen or name not in by_name:
            return False
        seen.add(name)
        path.append(name)
        if any(visit(src) for src in inputs[by_name[name]]):
            return True
        path.pop()
        return False

    return [*path, start] if visit(start) else None


def frees(sources: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """For each node, the outputs (``-1``: the model's input) it is the last to read, in
    order: what a runtime may drop once the node has run. The last node's output is never
    among them."""
    last = {j: i for i, row in enumerate(sources) for j in row}
    out: list[list[int]] = [[] for _ in sources]
    for j, i in sorted(last.items()):
        out[i].append(j)
    return tuple(tuple(row) for row in out)


def wire(names: Sequence[str], inputs: Sequence[Sequence[str]]) -> tuple[tuple[int, ...], ...]:
    """Each node's sources as node indices (``-1`` is the model's input), or a
    :class:`SpecError` naming the node: a bad or repeated name, an unknown input, a cycle, a
    node listed before its inputs, or a node whose output nothing uses."""
    by_name: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not NAME.fullmatch(name) or name == INPUT:
            raise SpecError(f"node {i}: name {name!r} must be 1-64 letters, digits, '_' or '-', and not '{INPUT}'")
        if name in by_name:
            raise SpecError(f"node '{name}': the name is used twice (nodes {by_name[name]} and {i})")
        by_name[name] = i
    sources: list[tuple[int, ...]] = []
    used = [False] * len(names)
    for i, (name, srcs) in enumerate(zip(names, inputs, strict=True)):
        if not srcs:
            sources.append((i - 1,))
        else:
            row = []
            for src in srcs:
                if src == INPUT:
                    row.append(-1)
                    continue
                if src not in by_name:
                    raise SpecError(f"node '{name}': input '{src}' is no node (nodes: {', '.join(names[:8])})")
                j = by_name[src]
                if j >= i:
                    loop = _cycle(name, by_name, inputs)
                    if loop:
                        raise SpecError(f"node '{name}': its inputs form a cycle ({' -> '.join(loop)})")
                    raise SpecError(f"node '{name}': input '{src}' is listed after it; list each node after its inputs")
                row.append(j)
            sources.append(tuple(row))
        for j in sources[-1]:
            if j >= 0:
                used[j] = True
    for i, name in enumerate(names[:-1]):
        if not used[i]:
            raise SpecError(f"node '{name}': its output is never used (only the last node is the model's output)")
    return tuple(sources)
