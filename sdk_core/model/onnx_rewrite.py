"""Rewrites of an ONNX graph before import, into what operator nodes can say.

- ``Gelu`` (opset 20) becomes its elementwise form (erf, or tanh for ``approximate="tanh"``);
  frameworks fuse it back (:mod:`sdk_core.model.opfuse`).
- ``Reshape(x, (-1, a, b))``, ``Transpose(perm=[0, 2, 1])``, ``Reshape`` back to ``x``'s rank (the
  dynamo exporter's way to swap the last two axes, merging the batch with the heads) is one
  ``Transpose`` of ``x``'s last two axes.
- ``Reshape(x, [-1, K])`` feeding a ``Gemm`` or ``MatMul`` by a stored weight, whose result is
  reshaped back, merges the batch into the rows (transformers' ``Conv1D`` writes it so): the
  spec keeps the batch axis free, so the product is taken on ``x`` directly (``MatMul`` over
  the last axis, then ``Add`` of the bias) and the first reshape is dropped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EXPANDED = ("Gelu",)


def rewrite(graph: Any, inits: dict[str, np.ndarray], ranks: dict[str, tuple[Any, ...]]) -> list[Any]:
    """The graph's nodes rewritten (``inits`` gains the constants the rewrites need;
    ``ranks``: the shapes ONNX's shape inference gave, by value name)."""
    import onnx.helper as h

    nodes = list(graph.node)
    readers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    out: list[Any] = []
    dropped: set[int] = set()
    counter = iter(range(1 << 30))

    def const(value: float) -> str:
        name = f"sdk_import_const_{next(counter)}"
        inits[name] = np.asarray(value, np.float32)
        return name

    for n in nodes:
        if id(n) in dropped:
            continue
        if n.op_type == "Gelu":
            out += _gelu(n, const, h)
            continue
        if n.op_type == "Reshape" and n.output[0] not in outputs:
            swap = _swap_after(n, readers, outputs, ranks)
            if swap is not None:
                dropped.update(id(m) for m in swap[:2])
                rank = len(ranks[n.input[0]])
                perm = [*range(rank - 2), rank - 1, rank - 2]
                out.append(h.make_node("Transpose", [n.input[0]], [swap[1].output[0]], name=swap[0].name, perm=perm))
                continue
            shape = ranks.get(n.input[0])
            g = _product_after(n, readers, inits, outputs, shape)
            if g is not None and shape is not None:
                dropped.add(id(g))
                w = inits[g.input[1]]
                k = w.shape[1] if any(a.name == "transB" and a.i == 1 for a in g.attribute) else w.shape[0]
                j, x = _trailing(shape, k), n.input[0]
                if j is not None and j > 1:  # (batch, T, heads, d) -> (batch, T, heads * d), the batch kept
                    target = f"{n.output[0]}_kept_batch"
                    inits[target] = np.asarray([0] * (len(shape) - j) + [k], np.int64)
                    out.append(h.make_node("Reshape", [x, target], [f"{n.output[0]}_rows"], name=n.name))
                    x = f"{n.output[0]}_rows"
                out += _as_matmul(g, x, inits, readers, const, h)
                continue
        out.append(n)
    return _live(out, outputs)


def _live(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """``nodes`` without those whose outputs nothing reads any more (after a rewrite)."""
    keep = list(nodes)
    while True:
        read = {i for n in keep for i in n.input} | outputs
        live = [n for n in keep if any(o in read for o in n.output if o)]
        if len(live) == len(keep):
            return live
        keep = live


def _swap_after(
    reshape: Any, readers: dict[str, list[Any]], outputs: set[str], ranks: dict[str, tuple[Any, ...]]
) -> tuple[Any, Any] | None:
    """The ``Transpose([0, 2, 1])`` and the ``Reshape`` back of a batch-merging last-two-axes swap."""
    x = ranks.get(reshape.input[0])
    merged = ranks.get(reshape.output[0])
    if x is None or len(x) < 4 or merged is None or len(merged) != 3:
        return None
    after = readers.get(reshape.output[0], [])
    if len(after) != 1 or after[0].op_type != "Transpose" or reshape.output[0] in outputs:
        return None
    t = after[0]
    perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), None)
    back = readers.get(t.output[0], [])
    if perm != [0, 2, 1] or len(back) != 1 or back[0].op_type != "Reshape" or t.output[0] in outputs:
        return None
    restored = ranks.get(back[0].output[0])
    if restored is None or len(restored) != len(x):
        return None
    return t, back[0]


def _product_after(
    reshape: Any, readers: dict[str, list[Any]], inits: dict[str, np.ndarray], outputs: set[str], shape: Any
) -> Any:
    """The Gemm/MatMul by a stored ``(K, N)`` weight that alone reads ``reshape`` of an ``x``
    of 3 axes or more ending in ``K`` (``shape``), and is itself only reshaped, or ``None``."""
    if shape is None or len(shape) < 3:
        return None
    after = readers.get(reshape.output[0], [])
    if len(after) != 1 or after[0].input[0] != reshape.output[0]:
        return None
    g = after[0]
    if g.op_type not in ("Gemm", "MatMul") or len(g.input) < 2 or g.input[1] not in inits:
        return None
    a = {x.name: x for x in g.attribute}
    if g.op_type == "Gemm" and any(
        (k in a and getattr(a[k], "f" if k in ("alpha", "beta") else "i") != v)
        for k, v in (("alpha", 1.0), ("beta", 1.0), ("transA", 0))
    ):
        return None
    w = inits[g.input[1]]
    trans = g.op_type == "Gemm" and "transB" in a and a["transB"].i == 1
    k = w.shape[1] if trans else w.shape[0]
    if w.ndim != 2 or _trailing(shape, k) is None:
        return None
    nxt = readers.get(g.output[0], [])
    if g.output[0] in outputs or len(nxt) != 1 or nxt[0].op_type != "Reshape":
        return None
    return g


def _trailing(shape: tuple[Any, ...], k: int) -> int | None:
    """How many trailing axes of ``shape`` hold ``k`` values together (the batch and one
    more axis stay in front), or ``None``."""
    size = 1
    for j in range(1, len(shape) - 1):
        d = shape[-j]
        if not isinstance(d, int) or d <= 0:
            return None
        size *= d
        if size == k:
            return j
        if size > k:
            return None
    return None


def _as_matmul(
    g: Any, x: str, inits: dict[str, np.ndarray], readers: dict[str, list[Any]], const: Any, h: Any
) -> list[Any]:
    a = {x.name: x for x in g.attribute}
    weight = g.input[1]
    if g.op_type == "Gemm" and "transB" in a and a["transB"].i == 1:
        transposed = f"{weight}.T" if len(readers.get(weight, [])) > 1 else weight
        inits[transposed] = np.ascontiguousarray(inits[weight].T)
        weight = transposed
    bias = g.input[2] if g.op_type == "Gemm" and len(g.input) > 2 and g.input[2] else None
    if bias is None:
        return [h.make_node("MatMul", [x, weight], [g.output[0]], name=g.name)]
    mid = f"{g.output[0]}_product"
    return [
        h.make_node("MatMul", [x, weight], [mid], name=f"{g.name}_matmul"),
        h.make_node("Add", [mid, bias], [g.output[0]], name=g.name),
    ]


def _gelu(n: Any, const: Any, h: Any) -> list[Any]:
    a = {x.name: x for x in n.attribute}
    approximate = a["approximate"].s.decode() if "approximate" in a else "none"
    x, y = n.input[0], n.output[0]
    p = n.name or y
    if approximate == "tanh":
        return [
            h.make_node("Mul", [x, x], [f"{p}_x2"], name=f"{p}_x2"),
            h.make_node("Mul", [f"{p}_x2", x], [f"{p}_x3"], name=f"{p}_x3"),
            h.make_node("Mul", [f"{p}_x3", const(0.044715)], [f"{p}_k"], name=f"{p}_k"),
            h.make_node("Add", [x, f"{p}_k"], [f"{p}_in"], name=f"{p}_in"),
            h.make_node("Mul", [f"{p}_in", const(math.sqrt(2 / math.pi))], [f"{p}_s"], name=f"{p}_s"),
            h.make_node("Tanh", [f"{p}_s"], [f"{p}_t"], name=f"{p}_t"),
            h.make_node("Add", [f"{p}_t", const(1.0)], [f"{p}_one"], name=f"{p}_one"),
            h.make_node("Mul", [x, const(0.5)], [f"{p}_half"], name=f"{p}_half"),
            h.make_node("Mul", [f"{p}_half", f"{p}_one"], [y], name=p),
        ]
    return [
        h.make_node("Div", [x, const(math.sqrt(2))], [f"{p}_d"], name=f"{p}_d"),
        h.make_node("Erf", [f"{p}_d"], [f"{p}_e"], name=f"{p}_e"),
        h.make_node("Add", [f"{p}_e", const(1.0)], [f"{p}_one"], name=f"{p}_one"),
        h.make_node("Mul", [x, f"{p}_one"], [f"{p}_m"], name=f"{p}_m"),
        h.make_node("Mul", [f"{p}_m", const(0.5)], [y], name=p),
    ]
