"""Which imported ONNX nodes are exactly one of the spec's layers (the frameworks' fast paths).

A match must compute the same numbers on the same shapes: Conv with a square kernel, equal
strides and pads, no groups nor dilation is ``conv2d``; Gemm, or MatMul by a stored weight
(with the Add of a stored bias after it), is ``dense``; Gather of a stored table by the
model's token input is ``embedding``; BatchNormalization and LayerNormalization (last axis)
are their layers; MaxPool and AveragePool without padding are the pools; Relu, Tanh,
Sigmoid, Softmax (last axis) and Flatten (axis 1) are theirs; Add of two equal shapes and
Concat on the channel axis are the merges. Everything else stays an operator node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import spec as S

Shape = tuple[int, ...]
# node name -> (layer, its node inputs, [(param, onnx initializer, value)], node names it absorbs)
Plan = dict[str, tuple[S.Layer, tuple[str, ...], list[tuple[str, str, np.ndarray]], tuple[str, ...]]]


def _ref(kind: str, ref: Any) -> str | None:
    return "input" if kind == "input" else ref if kind == "node" else None


def to_layers(
    nodes: list[Any], inits: dict[str, np.ndarray], consts: set[str], shape_of: Callable[[str], Shape | None]
) -> Plan:
    """The layer plan of the imported nodes (``shape_of(name)``: a node's or ``"input"``'s
    output shape without the batch axis, ``None`` if unknown)."""
    readers: dict[str, list[Any]] = {}
    for n in nodes:
        for kind, ref in n.inputs:
            if kind == "node":
                readers.setdefault(ref, []).append(n)
    stored = lambda kind, ref: kind == "init" and ref not in consts and inits[ref].dtype.kind == "f"
    plan: Plan = {}
    absorbed: set[str] = set()
    for n in nodes:
        if n.name in absorbed:
            continue
        ins = n.inputs
        node_ins = tuple(r for k, ref in ins if (r := _ref(k, ref)) is not None)
        a = n.attributes
        first = shape_of(node_ins[0]) if node_ins else None
        if n.op == "Conv" and len(node_ins) == 1 and ins[0][0] in ("node", "input") and stored(*ins[1]):
            w = inits[ins[1][1]]
            k, s, p = a.get("kernel_shape") or list(w.shape[2:]), a.get("strides") or [1, 1], a.get("pads") or [0] * 4
            if (
                w.ndim == 4
                and len(set(k)) == 1
                and k[0] == w.shape[2] == w.shape[3]
                and len(set(s)) == 1
                and len(set(p)) == 1
                and a.get("group", 1) == 1
                and set(a.get("dilations") or [1]) == {1}
                and a.get("auto_pad", "NOTSET") == "NOTSET"
                and first is not None
                and len(first) == 3
            ):
                bias = len(ins) > 2 and ins[2][0] != "none"
                params = [("weight", ins[1][1], w)] + ([("bias", ins[2][1], inits[ins[2][1]])] if bias else [])
                if not bias or stored(*ins[2]):
                    plan[n.name] = (
                        S.Conv2D(int(w.shape[0]), int(k[0]), int(s[0]), int(p[0]), bias=bias),
                        node_ins,
                        params,
                        (),
                    )
            continue
        if n.op == "Gemm" and len(node_ins) == 1 and ins[0][0] in ("node", "input") and stored(*ins[1]):
            if (
                a.get("alpha", 1.0) != 1.0
                or a.get("beta", 1.0) != 1.0
                or a.get("transA", 0)
                or first is None
                or len(first) != 1
            ):
                continue
            w = inits[ins[1][1]]
            w = w.T if a.get("transB", 0) else w
            bias = len(ins) > 2 and ins[2][0] != "none"
            if w.ndim != 2 or (bias and (not stored(*ins[2]) or inits[ins[2][1]].shape != (w.shape[1],))):
                continue
            params = [("weight", ins[1][1], np.ascontiguousarray(w))] + (
                [("bias", ins[2][1], inits[ins[2][1]])] if bias else []
            )
            plan[n.name] = (S.Dense(int(w.shape[1]), bias=bias), node_ins, params, ())
            continue
        if n.op == "MatMul" and len(node_ins) == 1 and ins[0][0] in ("node", "input") and stored(*ins[1]):
            w = inits[ins[1][1]]
            if w.ndim != 2 or first is None or not 1 <= len(first) <= 3 or first[-1] != w.shape[0]:
                continue
            params = [("weight", ins[1][1], w)]
            after = readers.get(n.name, [])
            if len(after) == 1 and after[0].op == "Add":
                add = after[0]
                other = [(k, r) for k, r in add.inputs if not (k == "node" and r == n.name)]
                if len(other) == 1 and stored(*other[0]) and inits[other[0][1]].shape == (w.shape[1],):
                    params.append(("bias", other[0][1], inits[other[0][1]]))
                    plan[add.name] = (S.Dense(int(w.shape[1]), bias=True), node_ins, params, (n.name,))
                    absorbed.add(add.name)
                    continue
            plan[n.name] = (S.Dense(int(w.shape[1]), bias=False), node_ins, params, ())
            continue
        if n.op == "Gather" and len(ins) == 2 and stored(*ins[0]) and ins[1][0] == "input" and a.get("axis", 0) == 0:
            table = inits[ins[0][1]]
            if table.ndim == 2 and first is not None and len(first) == 1:
                plan[n.name] = (
                    S.Embedding(int(table.shape[0]), int(table.shape[1])),
                    ("input",),
                    [("weight", ins[0][1], table)],
                    (),
                )
            continue
        if n.op == "BatchNormalization" and len(node_ins) == 1 and all(stored(*i) for i in ins[1:5]):
            if a.get("training_mode", 0) or first is None or len(first) not in (1, 3):
                continue
            names = ("weight", "bias", "running_mean", "running_var")
            params = [(p, ins[i + 1][1], inits[ins[i + 1][1]]) for i, p in enumerate(names)]
            layer = S.BatchNorm(eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - float(a.get("momentum", 0.9)))
            plan[n.name] = (layer, node_ins, params, ())
            continue
        if n.op == "LayerNormalization" and len(node_ins) == 1 and len(ins) == 3 and all(stored(*i) for i in ins[1:]):
            if first is None or a.get("axis", -1) not in (-1, len(first)) or inits[ins[1][1]].shape != (first[-1],):
                continue
            params = [("weight", ins[1][1], inits[ins[1][1]]), ("bias", ins[2][1], inits[ins[2][1]])]
            plan[n.name] = (S.LayerNorm(eps=float(a.get("epsilon", 1e-5))), node_ins, params, ())
            continue
        simple = _simple(n, node_ins, first, len(ins), shape_of)
        if simple is not None:
            plan[n.name] = (simple, node_ins, [], ())
    return plan


def _simple(
    n: Any, node_ins: tuple[str, ...], first: Shape | None, count: int, shape_of: Callable[[str], Shape | None]
) -> S.Layer | None:
    """The weightless layers."""
    a = n.attributes
    if len(node_ins) != count or first is None:
        return None
    if n.op in ("Relu", "Tanh", "Sigmoid") and count == 1:
        return {"Relu": S.ReLU, "Tanh": S.Tanh, "Sigmoid": S.Sigmoid}[n.op]()
    if n.op == "Softmax" and a.get("axis", -1) in (-1, len(first)):
        return S.Softmax()
    if n.op == "Flatten" and a.get("axis", 1) == 1:
        return S.Flatten()
    if n.op in ("MaxPool", "AveragePool") and len(first) == 3:
        k, s, p = a.get("kernel_shape", []), a.get("strides") or [1, 1], a.get("pads") or [0, 0, 0, 0]
        square = len(k) == 2 and k[0] == k[1] and len(set(s)) == 1
        plain = not any(p) and not a.get("ceil_mode", 0) and set(a.get("dilations") or [1]) == {1}
        if square and plain and a.get("auto_pad", "NOTSET") == "NOTSET":
            return (S.MaxPool2D if n.op == "MaxPool" else S.AvgPool2D)(int(k[0]), int(s[0]))
    if n.op == "Add" and count == 2 and len(set(node_ins)) == 2 and shape_of(node_ins[1]) == first:
        return S.Add()
    if n.op == "Concat" and count >= 2 and len(first) == 3 and a.get("axis") in (1, -3):
        shapes = [shape_of(i) for i in node_ins]
        if all(s is not None and s[1:] == first[1:] for s in shapes):
            return S.Concat()
    return None
