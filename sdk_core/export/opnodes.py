"""Operator nodes as ONNX nodes, one to one.

An operator node is written as the ONNX operator it names, with its attributes and its inputs
in order: other nodes' values, the canonical weights (initializers under their canonical
names), its constants (initializers named ``{node}.{key}``) and ``""`` for an omitted input.
Folded nodes (``Shape``, ``Range``, ``ConstantOfShape`` and arithmetic on shapes) are written
too, so the exported graph computes its shapes itself and keeps the batch free.

Where ONNX moved an argument between an attribute and an input across opsets (the axes of
``ReduceMean``/``ReduceMax`` at 18, of ``Squeeze``/``Unsqueeze`` at 13, ``Split``'s
``num_outputs`` at 18, ``Shape``'s ``start``/``end`` at 15), the node is written in the
target opset's form. ``Split`` writes every output and the node reads the one it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import SdkError
from ..model import ops_ref
from ..model import spec as S

NEEDS = {"LayerNormalization": 17}  # operators newer than the oldest opset written (13)


def write(graph: Any, spec: S.ModelSpec, i: int, values: Mapping[int, str], weight: Callable[[str], str]) -> str:
    """Node ``i`` (an :class:`~sdk_core.model.spec.Op`) of ``spec`` written into ``graph``;
    returns its output's value name. ``weight(name)`` adds a canonical weight."""
    layer = spec.layers[i]
    assert isinstance(layer, S.Op)
    node = spec.node_names[i]
    if graph.opset < NEEDS.get(layer.op, 0):
        raise SdkError(f"node '{node}' ({layer.op}) needs opset {NEEDS[layer.op]} or later (asked for {graph.opset})")
    by_name = dict(zip(spec.inputs[i] or ((spec.node_names[i - 1] if i else "input"),), spec.sources[i], strict=True))
    inputs = []
    for name in layer.inputs or (spec.node_names[i - 1] if i else "input",):
        if name == "":
            inputs.append("")
        elif name in layer.weights:
            inputs.append(weight(f"{node}.{name}"))
        elif name in layer.constants:
            array = layer.constants[name].array
            inputs.append(graph.const(array, f"{node}.{name}", dtype=array.dtype))
        else:
            inputs.append(values[by_name[name]])
    attributes = {k: v for k, v in layer.attributes.items() if v is not None}
    if layer.op == "Pad" and len(inputs) > 3 and inputs[3] and graph.opset < 18:  # axes: an input from 18
        rank = len(spec.shapes[spec.sources[i][0] + 1]) + 1
        widths = ops_ref.pad_widths(rank, [None, _const(graph, inputs[1]), None, _const(graph, inputs[3])])
        graph.initializers[:] = [t for t in graph.initializers if t.name not in (inputs[1], inputs[3])]
        inputs = [inputs[0], graph.const([w[0] for w in widths] + [w[1] for w in widths], "pads", np.int64), inputs[2]]
    return _emit(graph, layer.op, inputs, attributes, f"{node}.{layer.op}")


def _emit(graph: Any, op: str, inputs: list[str], a: dict[str, Any], hint: str) -> str:
    onnx, opset = graph.onnx, graph.opset
    if op in ("ReduceMean", "ReduceMax") and opset >= 18 and "axes" in a:
        inputs = [inputs[0], graph.const(a.pop("axes"), "axes", np.int64)]
    elif op in ("ReduceMean", "ReduceMax") and opset < 18 and len(inputs) > 1:
        a["axes"] = [int(v) for v in _const(graph, inputs.pop(1))]
    elif (op == "ReduceSum" and "axes" in a) or (
        op in ("Squeeze", "Unsqueeze") and "axes" in a
    ):  # an input from opset 13
        inputs = [inputs[0], graph.const(a.pop("axes"), "axes", np.int64)]
    elif op == "Shape" and opset < 15 and (a.get("start", 0) or a.get("end") is not None):
        whole = graph.op("Shape", inputs, hint)
        bounds = [
            graph.const([a.get("start", 0)], "start", np.int64),
            graph.const([a.get("end", 2**62)], "end", np.int64),
        ]
        return graph.op("Slice", [whole, *bounds], hint)
    elif op == "ConstantOfShape":
        value = np.asarray(a.pop("value", 0.0))
        value = value.astype(np.float32 if value.dtype.kind == "f" else np.int64 if value.dtype.kind in "iu" else bool)
        a["value"] = onnx.numpy_helper.from_array(value.reshape(1), "value")
    elif op == "Split":
        return _split(graph, inputs, a, hint)
    return graph.op(op, inputs, hint, **a)


def _const(graph: Any, name: str) -> np.ndarray:
    for tensor in graph.initializers:
        if tensor.name == name:
            return np.asarray(graph.onnx.numpy_helper.to_array(tensor))
    raise SdkError(f"'{name}' must be a constant for opset {graph.opset}")


def _split(graph: Any, inputs: list[str], a: dict[str, Any], hint: str) -> str:
    """ONNX Split with all its outputs; the node's value is the one ``output`` names."""
    pick, count = a.pop("output", 0), a.pop("num_outputs", None)
    sizes = None if len(inputs) < 2 or not inputs[1] else _const(graph, inputs[1])
    if sizes is None:
        count = count or 2
        if graph.opset >= 18:  # before 18 the number of outputs says it
            a["num_outputs"] = count
    outs = [graph.name(hint) for _ in range(len(sizes) if sizes is not None else count)]
    graph.nodes.append(
        graph.onnx.helper.make_node("Split", inputs[: 2 if sizes is not None else 1], outs, name=outs[0], **a)
    )
    return outs[pick]
