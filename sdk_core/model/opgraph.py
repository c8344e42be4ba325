"""Operator nodes inside a spec: each node's plan (what feeds each of its ONNX inputs), its
output's shape and dtype, and the folding of shape-only subgraphs.

:class:`~sdk_core.model.spec.ModelSpec` calls :func:`plan_node` for every operator node, in
order. A node whose inputs are all constants, or the shapes of other nodes (``Shape``,
``Range``, ``ConstantOfShape``, arithmetic on shapes), is *folded*: computed here, with the
NumPy reference, for two batch sizes. What does not depend on the batch becomes a constant;
a batch-sized entry survives only where ONNX can say "the batch" without a number (``0`` in a
Reshape target, ``1`` in an Expand shape), so the batch axis stays free. No framework runs a
folded node: the nodes that read it get its value as a constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from ..errors import SpecError
from . import ops, ops_ref
from .ops import OPS, Value

PROBES = (2, 3)  # the batch sizes a folded value is computed for


@attrs.frozen(eq=False)
class Folded:
    """A value the core computed: one array per probe batch size."""

    values: tuple[np.ndarray, ...]

    @property
    def constant(self) -> np.ndarray | None:
        """The value when it does not depend on the batch size."""
        a, b = self.values
        return a if a.shape == b.shape and np.array_equal(a, b) else None


@attrs.frozen(eq=False)
class OpPlan:
    """What a framework needs to run an operator node: the ONNX operator, its attributes with
    every default filled in (and, for Conv and the pools, ``pads`` explicit: no ``auto_pad``
    nor ``ceil_mode``), and for each ONNX input, in order, where it comes from:

    - ``("node", k)``: the node's ``k``-th input (``spec.sources[i][k]``);
    - ``("weight", name)``: the canonical weight ``name``;
    - ``("const", array)``: a constant (stored, or folded by the core);
    - ``None``: an omitted optional input.
    """

    op: str
    attributes: dict[str, Any]
    args: tuple[tuple[str, Any] | None, ...]

    def consts(self) -> list[Any]:
        """Each input's constant value, or ``None`` where it is not a constant."""
        return [a[1] if a is not None and a[0] == "const" else None for a in self.args]


def dtype_of(dtype: np.dtype[Any]) -> str:
    return "float" if dtype.kind == "f" else "bool" if dtype.kind == "b" else "int64"


def _batch_entry(value: Folded, op: str, position: int) -> np.ndarray:
    """A folded shape vector that holds the batch size at its front: ``0`` (copy the input's
    size) in a Reshape target, ``1`` (keep it) in an Expand shape."""
    a, b = value.values
    same_rest = a.shape == b.shape and a.ndim == 1 and a.size and np.array_equal(a[1:], b[1:])
    if same_rest and (a[0], b[0]) == PROBES and op in ("Reshape", "Expand") and position == 1:
        out = a.copy()
        out[0] = 0 if op == "Reshape" else 1
        return out
    raise SpecError(f"input {position} depends on the batch size in a way that cannot keep it free")


def _broadcast_constant(value: Folded) -> np.ndarray | None:
    """A batch-sized folded tensor whose rows are all the same, as one row (it broadcasts)."""
    a, b = value.values
    batch_sized = a.ndim and b.ndim and (a.shape[0], b.shape[0]) == PROBES and a.shape[1:] == b.shape[1:]
    return a[:1] if batch_sized and (a == a[:1]).all() and np.array_equal(a[:1], b[:1]) else None


def plan_node(
    layer: Any,
    node_inputs: Sequence[str],
    values: Sequence[Value | Folded],
    weight_prefix: str,
    float_dtype: str = "float32",
) -> tuple[OpPlan | None, Value | Folded]:
    """Plan one operator node (``layer`` an :class:`~sdk_core.model.spec.Op`) whose node
    inputs ``node_inputs`` have ``values``: its plan (``None`` when it is folded) and its
    output. Raises :class:`SpecError` without the node's name (the caller adds it)."""
    spec = OPS[layer.op]
    attributes = ops.attributes(layer.op, dict(layer.attributes))
    refs: list[tuple[str, Any] | None] = []
    ins: list[Value | Folded | None] = []
    for name in layer.inputs or tuple(node_inputs):  # none named: the node before
        if name == "":
            refs.append(None)
            ins.append(None)
        elif name in layer.weights:
            w = layer.weights[name]
            refs.append(("weight", f"{weight_prefix}{name}"))
            ins.append(Value(tuple(w.shape), "float"))
        elif name in layer.constants:
            array = layer.constants[name].array
            refs.append(("const", array))
            ins.append(Value(array.shape, dtype_of(array.dtype), const=array))
        else:
            k = list(node_inputs).index(name)
            refs.append(("node", k))
            ins.append(values[k])
    if layer.op in ops.FOLDED or (
        all(v is None or isinstance(v, Folded) or v.const is not None for v in ins)
        and not any(r is not None and r[0] == "weight" for r in refs)
    ):
        return None, _fold(layer.op, attributes, ins, float_dtype)
    for position, (ref, v) in enumerate(zip(refs, ins, strict=True)):
        if isinstance(v, Folded):  # a folded value read by a node that runs
            constant = v.constant
            if constant is None and position in spec.static:
                constant = _batch_entry(v, layer.op, position)
                if layer.op == "Reshape" and 0 not in constant[1:]:  # the dynamo exporter's say allowzero=1:
                    attributes["allowzero"] = 0  # the one 0, the batch entry, copies the batch size
            if constant is None:
                constant = _broadcast_constant(v)
            if constant is None:
                raise SpecError(f"input {position} is a folded value that depends on the batch size")
            refs[position] = ("const", constant)
            ins[position] = Value(constant.shape, dtype_of(constant.dtype), const=constant)
        elif position in spec.static and (v is None or v.const is None) and ref is not None:
            raise SpecError(f"input {position} ('{(layer.inputs or node_inputs)[position]}') must be a stored constant")
    batched = [v for v in ins if isinstance(v, Value) and v.shape and v.shape[0] is None]
    if not batched:  # a computation on weights (a tied or sliced table): a value without the batch axis
        trained = any(r is not None and r[0] == "weight" for r in refs) or any(
            r is not None and r[0] == "node" for r in refs
        )
        if not trained:
            raise SpecError("takes no node's output: a computation on stored tensors alone is not a node")
        stored, kind = _unbatched(layer.op, attributes, ins, float_dtype)
        return OpPlan(layer.op, attributes, tuple(refs)), Value(stored, kind)
    shape, dtype = spec.infer([v if isinstance(v, Value) or v is None else None for v in ins], attributes)
    if not shape or shape[0] is not None:
        raise SpecError(f"its output {ops.show(shape)} lost the batch axis, which stays free")
    if layer.op == "Squeeze" and attributes["axes"] is None and (len(refs) < 2 or refs[1] is None):
        x = ins[0]  # no axes: the size-1 axes of the inferred shape, never the batch (even of size 1)
        assert isinstance(x, Value)
        attributes["axes"] = [i for i, d in enumerate(x.shape) if d == 1]
    if layer.op in ("Conv", "MaxPool", "AveragePool"):
        attributes = _explicit_windows(layer.op, attributes, ins[0], ins[1] if layer.op == "Conv" else None)
    return OpPlan(layer.op, attributes, tuple(refs)), Value(shape, dtype)


def _unbatched(
    op: str, attributes: dict[str, Any], ins: Sequence[Value | Folded | None], float_dtype: str
) -> tuple[tuple[int, ...], str]:
    """The shape and dtype of a node computed from weights alone: the NumPy reference run on
    zero-strided stand-ins (ONNX's rules exactly; no batch axis to keep free)."""
    kinds = {"float": np.dtype(float_dtype), "int64": np.dtype(np.int64), "bool": np.dtype(bool)}
    args: list[Any] = []
    for v in ins:
        if isinstance(v, Folded):
            if v.constant is None:
                raise SpecError("reads a folded value that depends on the batch size")
            args.append(v.constant)
        elif v is None or v.const is not None:
            args.append(None if v is None else v.const)
        else:
            args.append(np.broadcast_to(np.zeros((), kinds[v.dtype]), tuple(int(d or 0) for d in v.shape)))
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(ops_ref.run(op, args, {**attributes, "float_dtype": np.dtype(float_dtype)}))
    except (ValueError, IndexError, TypeError) as exc:
        raise SpecError(f"{op} of its stored inputs fails: {exc}") from None
    return tuple(int(d) for d in out.shape), dtype_of(out.dtype)


def _fold(op: str, attributes: dict[str, Any], ins: Sequence[Value | Folded | None], float_dtype: str) -> Folded:
    """Compute a shape-only node for each probe batch size."""
    out = []
    for p, probe in enumerate(PROBES):
        args: list[Any] = []
        for v in ins:
            if v is None:
                args.append(None)
            elif isinstance(v, Folded):
                args.append(v.values[p])
            elif v.const is not None:
                args.append(v.const)
            elif op == "Shape":  # only its shape is read: a zero-strided array costs nothing
                dims = [probe if d is None else d for d in v.shape]
                args.append(np.broadcast_to(np.zeros((), np.float32), dims))
            else:
                raise SpecError(f"{op} of a computed tensor cannot be folded")
        try:
            out.append(np.asarray(ops_ref.run(op, args, {**attributes, "float_dtype": np.dtype(float_dtype)})))
        except (ValueError, IndexError, TypeError) as exc:
            raise SpecError(f"{op} cannot be computed from its constant inputs: {exc}") from None
    return Folded(tuple(out))


def _explicit_windows(op: str, a: dict[str, Any], x: Any, w: Any) -> dict[str, Any]:
    """Conv and pool attributes with ``kernel_shape``, ``strides``, ``dilations`` and ``pads``
    explicit, ``auto_pad`` and ``ceil_mode`` resolved into ``pads``."""
    spatial = [int(d) for d in x.shape[2:]]
    kernel = [int(k) for k in (w.shape[2:] if w is not None else a["kernel_shape"])]
    full = {**a, "kernel_shape": kernel, "strides": list(a["strides"] or [1] * len(kernel))}
    full["dilations"] = list(a.get("dilations") or [1] * len(kernel)) if op != "AveragePool" else [1] * len(kernel)
    pads = ops_ref.spatial_pads(full, spatial, kernel)
    if full.get("ceil_mode"):
        for i, (n, k, s, d) in enumerate(zip(spatial, kernel, full["strides"], full["dilations"], strict=True)):
            size = ops_ref.out_size(n, k, s, d, pads[i], ceil=True)
            extra = max((size - 1) * s + (k - 1) * d + 1 - (n + pads[i][0] + pads[i][1]), 0)
            if extra and op == "AveragePool" and full["count_include_pad"]:
                raise SpecError(
                    "AveragePool with ceil_mode and count_include_pad reads past the padding: not supported"
                )
            pads[i] = (pads[i][0], pads[i][1] + extra)
    full["pads"] = [p[0] for p in pads] + [p[1] for p in pads]
    full["auto_pad"], full["ceil_mode"] = "NOTSET", 0
    if op == "AveragePool":
        del full["dilations"]
    return full
