"""Rewrites of an ONNX graph before import, into what operator nodes can say.

- ``Gelu`` (opset 20) becomes its elementwise form (erf, or tanh for ``approximate="tanh"``);
  frameworks fuse it back (:mod:`sdk_core.model.opfuse`).
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
            product = _product_after(n, readers, inits, outputs, ranks.get(n.input[0]))
            if product is not None:
                g = product
                dropped.add(id(g))
                out += _as_matmul(g, n.input[0], inits, readers, const, h)
                continue
        out.append(n)
    return out


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
    if w.ndim != 2 or shape[-1] != k:
        return None
    nxt = readers.get(g.output[0], [])
    if g.output[0] in outputs or len(nxt) != 1 or nxt[0].op_type != "Reshape":
        return None
    return g


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
