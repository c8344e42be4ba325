"""Fusable regions of operator nodes: what a framework may run as one of its own fused ops.

ONNX writes a GELU as six to nine elementwise nodes (``x * 0.5 * (1 + erf(x / sqrt 2))``, or
the tanh form with ``x ** 3``), in whichever order the exporter chose. Run node by node, each
is a pass over the whole activation; the framework's own ``gelu`` is one. :func:`gelu_regions`
finds them by structure and checks them by value: a region is a connected set of elementwise
nodes, with scalar constants only, reading one tensor and read outside only at its last node,
whose NumPy reference output equals GELU (tanh or erf form) on probe values. A region that
computes something else, however it looks, is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from . import ops_ref
from .opgraph import OpPlan

ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Tanh", "Erf", "Sqrt", "Neg", "Exp", "Sigmoid"})
MARKERS = frozenset({"Tanh", "Erf"})
MAX_REGION = 16
PROBE = np.linspace(-6.0, 6.0, 97)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + ops_ref.erf(x / math.sqrt(2.0)))


FORMS = {"tanh": gelu_tanh, "none": gelu_erf}  # named as torch's ``approximate`` argument


@attrs.frozen
class Region:
    """Nodes ``members`` (ending at ``output``) compute ``gelu(x)`` of node ``source`` (``-1``:
    the model's input) in the ``approximate`` form (``"tanh"`` or ``"none"``)."""

    output: int
    source: int
    members: frozenset[int]
    approximate: str


def _scalar_args(plan: OpPlan) -> bool:
    """Every non-node input is a constant of one element (no weights: they train)."""
    for arg in plan.args:
        if arg is None or arg[0] == "node":
            continue
        if arg[0] != "const" or np.asarray(arg[1]).size != 1 or np.asarray(arg[1]).dtype.kind != "f":
            return False
    return True


def _evaluate(
    plans: Sequence[OpPlan | None], sources: Sequence[Sequence[int]], members: list[int], x: int
) -> np.ndarray:
    values = {x: PROBE}
    for i in members:  # in graph order
        plan = plans[i]
        assert plan is not None
        args = [
            None if a is None else values[sources[i][a[1]]] if a[0] == "node" else np.asarray(a[1], np.float64)
            for a in plan.args
        ]
        values[i] = ops_ref.run(plan.op, args, plan.attributes)
    return values[members[-1]]


def gelu_regions(plans: Sequence[OpPlan | None], sources: Sequence[Sequence[int]]) -> list[Region]:
    """The GELU regions of a graph (``spec.plans``, ``spec.sources``), disjoint, in order."""
    readers: dict[int, list[int]] = {}
    for i, row in enumerate(sources):
        for j in row:
            readers.setdefault(j, []).append(i)
    fusable = {i for i, p in enumerate(plans) if p is not None and p.op in ELEMENTWISE and _scalar_args(p)}
    found: list[Region] = []
    taken: set[int] = set()
    for marker in (i for i in sorted(fusable) if plans[i].op in MARKERS):  # type: ignore[union-attr]
        if marker in taken:
            continue
        region = _around(marker, fusable - taken, sources, readers, plans)
        if region is not None:
            found.append(region)
            taken |= region.members
    return found


def _around(
    marker: int,
    fusable: set[int],
    sources: Sequence[Sequence[int]],
    readers: dict[int, list[int]],
    plans: Sequence[OpPlan | None],
) -> Region | None:
    # the one tensor the marker's elementwise ancestry starts from
    back, todo, outside = set(), [marker], set()
    while todo:
        i = todo.pop()
        if i in back:
            continue
        back.add(i)
        for j in sources[i]:
            if j in fusable:
                todo.append(j)
            else:
                outside.add(j)
        if len(back) > MAX_REGION:
            return None
    if len(outside) != 1:
        return None
    (x,) = outside
    # the elementwise nodes reachable from x, then the largest closed region ending in one of them
    ahead: set[int] = set()
    todo = [r for r in readers.get(x, []) if r in fusable]
    while todo and len(ahead) <= MAX_REGION:
        i = todo.pop()
        if i not in ahead:
            ahead.add(i)
            todo += [r for r in readers.get(i, []) if r in fusable]
    for end in sorted(ahead, reverse=True):
        members = _ancestors(end, ahead, sources)
        if marker not in members or not _closed(members, end, x, sources, readers):
            continue
        order = sorted(members)
        try:
            with np.errstate(all="ignore"):
                out = _evaluate(plans, sources, order, x)
        except Exception:  # a shape the probe cannot take: not a GELU
            continue
        for approximate, fn in FORMS.items():
            if out.shape == PROBE.shape and np.allclose(out, fn(PROBE), rtol=1e-6, atol=1e-6):
                return Region(end, x, frozenset(members), approximate)
    return None


def _ancestors(end: int, within: set[int], sources: Sequence[Sequence[int]]) -> set[int]:
    members, todo = set(), [end]
    while todo:
        i = todo.pop()
        if i not in members:
            members.add(i)
            todo += [j for j in sources[i] if j in within]
    return members


def _closed(
    members: set[int], end: int, x: int, sources: Sequence[Sequence[int]], readers: dict[int, list[int]]
) -> bool:
    """Only ``x`` feeds the region from outside, and only ``end`` is read outside it."""
    if any(j not in members and j != x for i in members for j in sources[i]):
        return False
    return all(r in members for i in members - {end} for r in readers.get(i, []))


# -- attention and linear layers -----------------------------------------------------------------
@attrs.frozen(eq=False)
class Attention:
    """``MatMul(Softmax(MatMul(q, kt) * scale + mask), v)``, the nodes ``members`` ending at
    ``output``: scaled dot-product attention of ``q``, ``kt`` transposed on its last two axes
    and ``v`` (node indices), with ``mask`` a node index, a constant array or ``None``
    (``causal`` when the constant is the causal mask)."""

    output: int
    q: int
    kt: int
    v: int
    scale: float
    mask: int | np.ndarray | None
    causal: bool
    members: frozenset[int]


@attrs.frozen
class Linear:
    """``Add(MatMul(x, weight), bias)`` at nodes ``members`` ending at ``output``: a linear layer
    of node ``source`` with the canonical weights ``weight`` ``(in, out)`` and ``bias``."""

    output: int
    source: int
    weight: str
    bias: str
    members: frozenset[int]


def _readers(sources: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    readers: dict[int, list[int]] = {}
    for i, row in enumerate(sources):
        for j in row:
            readers.setdefault(j, []).append(i)
    return readers


def _split(plan: OpPlan, sources: Sequence[int]) -> tuple[list[int], list[tuple[str, Any]]]:
    """A node's node inputs and its other (weight, constant) inputs."""
    nodes = [sources[a[1]] for a in plan.args if a is not None and a[0] == "node"]
    return nodes, [a for a in plan.args if a is not None and a[0] != "node"]


def _causal(mask: np.ndarray) -> bool:
    if mask.ndim < 2 or mask.size != mask.shape[-1] * mask.shape[-2] or mask.shape[-1] != mask.shape[-2]:
        return False
    square = mask.reshape(mask.shape[-2], mask.shape[-1])
    above = np.triu(np.ones(square.shape, bool), 1)
    return bool(np.all(square[~above] == 0) and np.all(square[above] <= -1e4))


def attention_regions(
    plans: Sequence[OpPlan | None], sources: Sequence[Sequence[int]], shapes: Sequence[tuple[Any, ...]]
) -> list[Attention]:
    """The scaled dot-product attentions of a graph (``spec.plans``, ``spec.sources``,
    ``spec.shapes``), each intermediate read only inside its region."""
    readers, found = _readers(sources), []

    def op(i: int) -> str:
        plan = plans[i] if i >= 0 else None
        return "" if plan is None else plan.op

    for out, plan in enumerate(plans):
        if op(out) != "MatMul" or len(shapes[out + 1]) != 3:
            continue
        nodes, other = _split(plan, sources[out])  # type: ignore[arg-type]
        if len(nodes) != 2 or other:
            continue
        soft, v = nodes
        if op(soft) != "Softmax" or plans[soft].attributes["axis"] not in (-1, 3) or readers[soft] != [out]:  # type: ignore[union-attr]
            continue
        members, scale = {out, soft}, 1.0
        mask: int | np.ndarray | None = None
        (cur,) = sources[soft]
        if op(cur) == "Add" and readers[cur] == [soft]:
            ins, rest = _split(plans[cur], sources[cur])  # type: ignore[arg-type]
            if len(ins) == 2 and not rest:
                members.add(cur)
                cur, mask = ins  # exporters write the scores first
            elif len(ins) == 1 and len(rest) == 1 and rest[0][0] == "const":
                members.add(cur)
                cur, mask = ins[0], np.asarray(rest[0][1], np.float64)
            else:
                continue
        if op(cur) in ("Mul", "Div") and len(readers[cur]) == 1 and readers[cur][0] in members:
            ins, rest = _split(plans[cur], sources[cur])  # type: ignore[arg-type]
            if len(ins) != 1 or len(rest) != 1 or rest[0][0] != "const" or np.asarray(rest[0][1]).size != 1:
                continue
            factor = float(np.asarray(rest[0][1]).reshape(()))
            if factor == 0:
                continue
            members.add(cur)
            scale = factor if op(cur) == "Mul" else 1.0 / factor
            (cur,) = ins
        if op(cur) != "MatMul" or len(readers[cur]) != 1 or readers[cur][0] not in members:
            continue
        ins, rest = _split(plans[cur], sources[cur])  # type: ignore[arg-type]
        if len(ins) != 2 or rest or len(shapes[cur + 1]) != 3:
            continue
        members.add(cur)
        causal = isinstance(mask, np.ndarray) and _causal(mask)
        found.append(Attention(out, ins[0], ins[1], v, scale, None if causal else mask, causal, frozenset(members)))
    return found


def linear_regions(
    plans: Sequence[OpPlan | None], sources: Sequence[Sequence[int]], weight_shapes: Mapping[str, tuple[int, ...]]
) -> list[Linear]:
    """``MatMul`` by a stored ``(in, out)`` weight followed by ``Add`` of a stored ``(out,)``
    bias (``weight_shapes``: canonical name to shape, ``spec.layout()``)."""
    readers, found = _readers(sources), []
    for mm, plan in enumerate(plans):
        if plan is None or plan.op != "MatMul" or len(readers.get(mm, [])) != 1:
            continue
        (add,) = readers[mm]
        ap = plans[add]
        if ap is None or ap.op != "Add" or plan.args[0] != ("node", 0) or (plan.args[1] or ("",))[0] != "weight":
            continue
        bias = [a for a in ap.args if a is not None and a[0] == "weight"]
        if len(bias) != 1 or len([a for a in ap.args if a is not None and a[0] == "node"]) != 1:
            continue
        w, b = weight_shapes.get(plan.args[1][1], ()), weight_shapes.get(bias[0][1], ())  # type: ignore[index]
        if len(w) != 2 or b != (w[1],):
            continue
        found.append(Linear(add, sources[mm][0], plan.args[1][1], bias[0][1], frozenset({mm, add})))  # type: ignore[index]
    return found
