"""The operators an operator node (:class:`sdk_core.model.spec.Op`) may name: ONNX's, with
its attribute defaults, which inputs must be stored constants, and the rule that gives the
output's shape and dtype from the inputs'.

Shapes here include the batch axis, written ``None``: every value a node computes has the
batch first, and the batch stays free, so an operator may not reduce, move, merge or index
it (an error names the node, the operator and the shapes). Dtypes are ``float`` (the model's
float dtype), ``int64`` or ``bool``. Stored tensors have concrete shapes and no batch axis.
The ONNX operator documentation is the reference for every rule; :mod:`sdk_core.model.ops_ref`
computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from ..errors import SpecError
from . import ops_ref

Dim = int | None  # None: the batch axis
Shape = tuple[Dim, ...]


@attrs.frozen
class Value:
    """What flows into an operator: a shape (``None`` the batch axis) and a dtype, and for a
    stored constant its value."""

    shape: Shape
    dtype: str = "float"
    const: Any = None  # numpy array, for constants


@attrs.frozen
class OpDef:
    """One operator: how many inputs (``inputs`` min and max, ``None``: any number), which
    input positions must be constants (``static``), attribute defaults, and its rule."""

    name: str
    inputs: tuple[int, int | None]
    infer: Callable[[list[Value | None], dict[str, Any]], tuple[Shape, str]]
    defaults: dict[str, Any] = attrs.field(factory=dict)
    static: tuple[int, ...] = ()


def fail(message: str) -> SpecError:
    return SpecError(message)


def show(shape: Shape) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


# -- shape rules ----------------------------------------------------------------------------------
def broadcast(*shapes: Shape) -> Shape:
    """ONNX's multidirectional broadcasting; the batch meets only itself or 1."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise fail(f"shapes {', '.join(show(s) for s in shapes)} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def need_float(v: Value, what: str = "input") -> None:
    if v.dtype != "float":
        raise fail(f"{what} must be float (got {v.dtype})")


def axis(value: int, rank: int, what: str = "axis", batch: bool = False) -> int:
    """``value`` as an index in ``range(rank)``; the batch axis 0 is refused unless ``batch``."""
    if not -rank <= value < rank:
        raise fail(f"'{what}' {value} is out of range for rank {rank}")
    out = value + rank if value < 0 else value
    if out == 0 and not batch:
        raise fail(f"'{what}' {value} is the batch axis, which stays free")
    return out


def const_of(v: Value | None, what: str) -> np.ndarray:
    if v is None or v.const is None:
        raise fail(f"'{what}' must be a stored constant")
    return np.asarray(v.const)


def elementwise(
    dtype: str | None = None, floats: bool = True
) -> Callable[[list[Value | None], dict[str, Any]], tuple[Shape, str]]:
    """Broadcast every input; the output has ``dtype`` (default: the first input's)."""

    def infer(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
        present = [v for v in values if v is not None]
        if floats:
            need_float(present[0])
        return broadcast(*(v.shape for v in present)), dtype or present[0].dtype

    return infer


def matmul(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x, w = values[0], values[1]
    assert x is not None and w is not None
    if len(x.shape) < 1 or len(w.shape) < 1:
        raise fail("MatMul needs inputs of rank 1 or more")
    xs = x.shape if len(x.shape) > 1 else (1,) + x.shape
    ws = w.shape if len(w.shape) > 1 else w.shape + (1,)
    if xs[-1] != ws[-2] or xs[-1] is None:
        raise fail(f"MatMul of {show(x.shape)} and {show(w.shape)}: inner sizes {xs[-1]} and {ws[-2]} differ")
    out = broadcast(xs[:-2], ws[:-2]) + (xs[-2], ws[-1])
    if len(x.shape) == 1:
        out = out[:-2] + out[-1:]
    if len(w.shape) == 1:
        out = out[:-1]
    return out, "float"


def gemm(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x, w, c = values[0], values[1], values[2] if len(values) > 2 else None
    assert x is not None and w is not None
    if len(x.shape) != 2 or len(w.shape) != 2:
        raise fail(f"Gemm needs two matrices (got {show(x.shape)} and {show(w.shape)})")
    if a["transA"]:
        raise fail("'transA' 1 would move the batch axis, which stays free")
    m, k = x.shape
    k2, n = w.shape[::-1] if a["transB"] else w.shape
    if k != k2:
        raise fail(
            f"Gemm of {show(x.shape)} and {show(w.shape)} (transB {a['transB']}): inner sizes {k} and {k2} differ"
        )
    out: Shape = (m, n)
    if c is not None:
        broadcast(out, c.shape)
    return out, "float"


def reduced(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    given = values[1] if len(values) > 1 else None
    axes_v = const_of(given, "axes").tolist() if given is not None else a.get("axes")
    rank = len(x.shape)
    if not axes_v:
        if a["noop_with_empty_axes"]:
            return x.shape, x.dtype
        raise fail("reducing every axis would reduce the batch axis, which stays free: give 'axes'")
    axes = {axis(int(v), rank, "axes") for v in axes_v}
    if a["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype
    return tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype


def softmax(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    need_float(x)
    axis(a["axis"], len(x.shape))
    return x.shape, "float"


def layer_norm(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x, scale = values[0], values[1]
    assert x is not None and scale is not None
    need_float(x)
    start = axis(a["axis"], len(x.shape))
    norm = x.shape[start:]
    for v, what in ((scale, "Scale"), (values[2] if len(values) > 2 else None, "B")):
        if v is not None:
            broadcast(norm, v.shape)
            if len(v.shape) > len(norm):
                raise fail(f"'{what}' {show(v.shape)} has more axes than the normalised {show(norm)}")
    return x.shape, "float"


def batch_norm(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    need_float(x)
    if len(x.shape) < 2:
        raise fail(f"BatchNormalization needs (batch, channels, ...) (got {show(x.shape)})")
    for v, what in zip(values[1:5], ("scale", "B", "input_mean", "input_var"), strict=True):
        if v is None or v.shape != (x.shape[1],):
            raise fail(f"'{what}' must have shape ({x.shape[1]},) (got {show(v.shape) if v else 'none'})")
    if a["training_mode"]:
        raise fail("'training_mode' 1 is not supported: the batchnorm layer trains with batch statistics")
    return x.shape, "float"


def reshape(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    given = [int(t) for t in const_of(values[1], "shape").reshape(-1)]
    copy = not a["allowzero"]  # a 0 copies the input's size
    target: list[Any] = [x.shape[i] if t == 0 and copy and i < len(x.shape) else t for i, t in enumerate(given)]
    if target.count(-1) > 1:
        raise fail(f"Reshape target {target} has more than one -1")
    known = math.prod(d for d in x.shape if d is not None)
    if None not in target:  # the batch must stay at the front, whole
        if -1 not in target or target[0] != -1:
            raise fail(f"Reshape of {show(x.shape)} to {target}: the batch axis must stay first (0 or -1 there)")
        target[0] = None
        rest = math.prod(target[1:])
        if rest != known:
            raise fail(f"Reshape of {show(x.shape)} to {show(tuple(target))}: {known} values per sample, not {rest}")
        return tuple(target), x.dtype
    if target[0] is not None:
        raise fail(f"Reshape of {show(x.shape)} to {target}: the batch axis must stay first")
    fixed = math.prod(t for t in target[1:] if t != -1)
    if -1 in target[1:]:
        if fixed == 0 or known % fixed:
            raise fail(f"Reshape of {show(x.shape)} to {target}: {known} values per sample do not divide by {fixed}")
        target[target.index(-1)] = known // fixed
    elif fixed != known:
        raise fail(f"Reshape of {show(x.shape)} to {show(tuple(target))}: {known} values per sample, not {fixed}")
    return tuple(target), x.dtype


def transpose(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    rank = len(x.shape)
    perm = list(a["perm"] or range(rank - 1, -1, -1))
    if sorted(perm) != list(range(rank)):
        raise fail(f"'perm' {perm} is no permutation of {rank} axes")
    if perm[0] != 0:
        raise fail(f"'perm' {perm} moves the batch axis, which stays free")
    return tuple(x.shape[p] for p in perm), x.dtype


def flatten(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    if axis(a["axis"], len(x.shape) + 1, "axis", batch=True) != 1:
        raise fail(f"'axis' {a['axis']} would merge the batch axis: only 1 keeps it free")
    return (None, math.prod(d for d in x.shape[1:] if d is not None)), x.dtype


def squeeze(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    given = values[1] if len(values) > 1 else None
    axes_v = const_of(given, "axes").tolist() if given is not None else a.get("axes")
    if axes_v is None:
        drop = {i for i, d in enumerate(x.shape) if d == 1}
    else:
        drop = {axis(int(v), len(x.shape), "axes") for v in axes_v}
    for i in drop:
        if x.shape[i] != 1:
            raise fail(f"Squeeze of axis {i} of {show(x.shape)}: its size is not 1")
    return tuple(d for i, d in enumerate(x.shape) if i not in drop), x.dtype


def unsqueeze(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    given = values[1] if len(values) > 1 else None
    axes_v = const_of(given, "axes").tolist() if given is not None else a.get("axes")
    if not axes_v:
        raise fail("Unsqueeze needs 'axes'")
    rank = len(x.shape) + len(axes_v)
    axes = sorted(axis(int(v), rank, "axes") for v in axes_v)
    out = list(x.shape)
    for i in axes:
        out.insert(i, 1)
    return tuple(out), x.dtype


def concat(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    present = [v for v in values if v is not None]
    rank = len(present[0].shape)
    if any(len(v.shape) != rank for v in present):
        raise fail(f"Concat of ranks {[len(v.shape) for v in present]}: all must have rank {rank}")
    k = axis(a["axis"], rank)
    out = list(present[0].shape)
    for v in present[1:]:
        for i, (d, e) in enumerate(zip(out, v.shape, strict=True)):
            if i != k and d != e:
                raise fail(f"Concat along axis {k} of {', '.join(show(p.shape) for p in present)}: axis {i} differs")
    out[k] = sum(int(v.shape[k] or 0) for v in present)
    return tuple(out), present[0].dtype


def split(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    k = axis(a["axis"], len(x.shape))
    size = int(x.shape[k])  # type: ignore[arg-type]
    sizes = values[1] if len(values) > 1 else None
    args = [None, const_of(sizes, "split")] if sizes is not None else [None]
    bounds = ops_ref.split_bounds(size, args, a)
    if sizes is not None and bounds[-1][1] != size:
        raise fail(f"'split' sizes add up to {bounds[-1][1]}, not the axis' {size}")
    if not 0 <= a["output"] < len(bounds):
        raise fail(f"'output' {a['output']} must name one of the {len(bounds)} outputs")
    start, end = bounds[a["output"]]
    return tuple(end - start if i == k else d for i, d in enumerate(x.shape)), x.dtype


def slice_(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    args = [None] + [
        const_of(v, n) if v is not None else None
        for v, n in zip(values[1:], ("starts", "ends", "axes", "steps"), strict=False)
    ]
    rank = len(x.shape)
    starts = args[1]
    assert starts is not None
    axes = [int(v) for v in args[3]] if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    for v in axes:
        if axis(v, rank, "axes", batch=True) == 0:
            raise fail("Slice of the batch axis: it stays free")
    probe = tuple(1 if d is None else d for d in x.shape)
    sliced = np.broadcast_to(np.zeros((), np.int8), probe)[ops_ref.slices(probe, args)].shape  # a view: free
    out = tuple(None if d is None else n for d, n in zip(x.shape, sliced, strict=True))
    if any(d == 0 for d in out):
        raise fail(f"Slice of {show(x.shape)} leaves an empty axis")
    return out, x.dtype


def gather(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    data, index = values[0], values[1]
    assert data is not None and index is not None
    if index.dtype != "int64":
        raise fail(f"'indices' must be int64 (got {index.dtype})")
    batched_data = bool(data.shape) and data.shape[0] is None
    k = axis(a["axis"], len(data.shape), batch=not batched_data)
    if batched_data and index.shape and index.shape[0] is None:
        raise fail("Gather with batched data and batched indices: give one of them as a stored tensor")
    if index.const is not None:
        size = data.shape[k]
        if size is not None and ((index.const < -size) | (index.const >= size)).any():
            raise fail(f"'indices' out of range for axis {k} of size {size}")
    return data.shape[:k] + index.shape + data.shape[k + 1 :], data.dtype


def gather_elements(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    data, index = values[0], values[1]
    assert data is not None and index is not None
    if len(index.shape) != len(data.shape):
        raise fail(f"'indices' {show(index.shape)} must have the rank of the data {show(data.shape)}")
    axis(a["axis"], len(data.shape))
    return tuple(
        None if d is None or e is None else e for d, e in zip(data.shape, index.shape, strict=True)
    ), data.dtype


def expand(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    target = tuple(int(t) for t in const_of(values[1], "shape").reshape(-1))
    rank = max(len(target), len(x.shape))
    target = (1,) * (rank - len(target)) + target
    if x.shape and x.shape[0] is None and len(target) > len(x.shape):
        raise fail(f"Expand of {show(x.shape)} to {target} adds axes before the batch axis")
    return broadcast(x.shape, target), x.dtype


def window_op(values: list[Value | None], a: dict[str, Any], kernel: Sequence[int], channels: Dim) -> Shape:
    x = values[0]
    assert x is not None
    spatial = x.shape[2:]
    if len(spatial) != len(kernel) or any(d is None for d in spatial):
        raise fail(f"needs (batch, channels, {'x'.join(['n'] * len(kernel))}) input (got {show(x.shape)})")
    a = {**a, "strides": a["strides"] or [1] * len(kernel)}
    pads = ops_ref.spatial_pads(a, spatial, kernel)  # type: ignore[arg-type]
    dilations = a.get("dilations") or [1] * len(kernel)
    out = [
        ops_ref.out_size(int(n), k, s, d, p, bool(a.get("ceil_mode")))  # type: ignore[arg-type]
        for n, k, s, d, p in zip(spatial, kernel, a["strides"], dilations, pads, strict=True)
    ]
    if min(out) < 1:
        raise fail(f"window {list(kernel)} does not fit input {show(x.shape)} (pads {pads})")
    return (x.shape[0], channels) + tuple(out)


def conv(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x, w = values[0], values[1]
    assert x is not None and w is not None
    need_float(x)
    group = a["group"]
    if len(w.shape) != len(x.shape) or len(x.shape) < 3:
        raise fail(f"Conv of {show(x.shape)} with weight {show(w.shape)}: ranks must match (batch, channels, ...)")
    m, cg = w.shape[0], w.shape[1]
    if x.shape[1] != (cg or 0) * group or (m or 0) % group:
        raise fail(f"Conv weight {show(w.shape)} with group {group} does not fit {x.shape[1]} input channels")
    kernel = [int(k) for k in w.shape[2:]]  # type: ignore[arg-type]
    if a["kernel_shape"] and list(a["kernel_shape"]) != kernel:
        raise fail(f"'kernel_shape' {a['kernel_shape']} differs from the weight's {kernel}")
    if len(values) > 2 and values[2] is not None and values[2].shape != (m,):
        raise fail(f"Conv bias must have shape ({m},) (got {show(values[2].shape)})")
    return window_op(values, a, kernel, m), "float"


def pool(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    need_float(x)
    if not a["kernel_shape"]:
        raise fail("needs 'kernel_shape'")
    return window_op(values, a, list(a["kernel_shape"]), x.shape[1]), "float"


def global_pool(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    need_float(x)
    if len(x.shape) < 3:
        raise fail(f"needs (batch, channels, ...) input (got {show(x.shape)})")
    return x.shape[:2] + (1,) * (len(x.shape) - 2), "float"


def pad(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    rank = len(x.shape)
    pads = const_of(values[1], "pads")
    args: list[Any] = [None, pads, None]
    if len(values) > 3 and values[3] is not None:
        args.append(const_of(values[3], "axes"))
    axes_n = len(args[3]) if len(args) > 3 else rank
    if len(pads) != 2 * axes_n:
        raise fail(f"'pads' needs {2 * axes_n} values (got {len(pads)})")
    widths = ops_ref.pad_widths(rank, args)
    if widths[0] != (0, 0):
        raise fail("Pad of the batch axis: it stays free")
    if a["mode"] not in ("constant", "reflect", "edge"):
        raise fail(f"'mode' must be constant, reflect or edge (got {a['mode']!r})")
    return tuple(d if d is None else d + lo + hi for d, (lo, hi) in zip(x.shape, widths, strict=True)), x.dtype


def where(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    cond, x, y = values[0], values[1], values[2]
    assert cond is not None and x is not None and y is not None
    if cond.dtype != "bool":
        raise fail(f"'condition' must be bool (got {cond.dtype})")
    return broadcast(cond.shape, x.shape, y.shape), x.dtype


def cast(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    x = values[0]
    assert x is not None
    to = a["to"]
    if to not in ops_ref.CAST:
        raise fail(f"'to' {to} is not a supported type (float, float16, double, bfloat16, int32, int64, bool)")
    kind = np.dtype(ops_ref.CAST[to]).kind
    return x.shape, "float" if kind == "f" else "bool" if kind == "b" else "int64"


def same(
    dtype: str | None = None, floats: bool = True
) -> Callable[[list[Value | None], dict[str, Any]], tuple[Shape, str]]:
    def infer(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
        x = values[0]
        assert x is not None
        if floats:
            need_float(x)
        return x.shape, dtype or x.dtype

    return infer


def folded_only(values: list[Value | None], a: dict[str, Any]) -> tuple[Shape, str]:
    raise fail("is a shape-only operator: its inputs must be constants or shapes, so that it folds")


_EW = elementwise()
_POOL = {"kernel_shape": [], "strides": [], "pads": [], "auto_pad": "NOTSET", "ceil_mode": 0}
_REDUCE = {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0}

OPS: dict[str, OpDef] = {
    d.name: d
    for d in (
        OpDef("MatMul", (2, 2), matmul),
        OpDef("Gemm", (2, 3), gemm, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}),
        *(OpDef(n, (2, 2), _EW) for n in ("Add", "Sub", "Mul", "Div")),
        OpDef("Pow", (2, 2), _EW),
        *(OpDef(n, (1, 1), same()) for n in ("Sqrt", "Exp", "Log", "Neg", "Abs", "Erf", "Tanh", "Sigmoid", "Relu")),
        OpDef("LeakyRelu", (1, 1), same(), {"alpha": 0.01}),
        OpDef("Clip", (1, 3), same(), static=(1, 2)),
        *(OpDef(n, (1, None), _EW) for n in ("Min", "Max")),
        OpDef("Where", (3, 3), where),
        *(OpDef(n, (2, 2), elementwise("bool", floats=False)) for n in ("Equal", "Less", "Greater")),
        OpDef("Not", (1, 1), same("bool", floats=False)),
        OpDef("And", (2, 2), elementwise("bool", floats=False)),
        OpDef("Cast", (1, 1), cast, {"to": 1, "saturate": 1}),
        OpDef("IsNaN", (1, 1), same("bool")),
        *(OpDef(n, (1, 2), reduced, _REDUCE, static=(1,)) for n in ("ReduceMean", "ReduceSum", "ReduceMax")),
        OpDef("Softmax", (1, 1), softmax, {"axis": -1}),
        OpDef("LogSoftmax", (1, 1), softmax, {"axis": -1}),
        OpDef("LayerNormalization", (2, 3), layer_norm, {"axis": -1, "epsilon": 1e-5, "stash_type": 1}),
        OpDef(
            "BatchNormalization",
            (5, 5),
            batch_norm,
            {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0},
        ),
        OpDef("Reshape", (2, 2), reshape, {"allowzero": 0}, static=(1,)),
        OpDef("Transpose", (1, 1), transpose, {"perm": None}),
        OpDef("Flatten", (1, 1), flatten, {"axis": 1}),
        OpDef("Squeeze", (1, 2), squeeze, {"axes": None}, static=(1,)),
        OpDef("Unsqueeze", (1, 2), unsqueeze, {"axes": None}, static=(1,)),
        OpDef("Concat", (1, None), concat, {"axis": None}),
        OpDef("Split", (1, 2), split, {"axis": 0, "num_outputs": None, "output": 0}, static=(1,)),
        OpDef("Slice", (3, 5), slice_, static=(1, 2, 3, 4)),
        OpDef("Gather", (2, 2), gather, {"axis": 0}),
        OpDef("GatherElements", (2, 2), gather_elements, {"axis": 0}),
        OpDef("Expand", (2, 2), expand, static=(1,)),
        OpDef("Identity", (1, 1), same(floats=False)),
        OpDef("Dropout", (1, 3), same(), {"seed": None}, static=(1, 2)),
        OpDef(
            "Conv",
            (2, 3),
            conv,
            {"auto_pad": "NOTSET", "dilations": [], "group": 1, "kernel_shape": [], "pads": [], "strides": []},
        ),
        OpDef("MaxPool", (1, 1), pool, {**_POOL, "dilations": [], "storage_order": 0}),
        OpDef("AveragePool", (1, 1), pool, {**_POOL, "count_include_pad": 0}),
        OpDef("GlobalAveragePool", (1, 1), global_pool),
        OpDef("Pad", (2, 4), pad, {"mode": "constant"}, static=(1, 2, 3)),
        # shape-only: folded into constants when the spec is built (see fold)
        OpDef("Shape", (1, 1), folded_only, {"start": 0, "end": None}),
        OpDef("Range", (3, 3), folded_only),
        OpDef("ConstantOfShape", (1, 1), folded_only, {"value": 0.0}),
        # position ids and masks that exporters compute from the input's shape
        OpDef("CumSum", (2, 2), folded_only, {"exclusive": 0, "reverse": 0}),
        OpDef("GatherND", (2, 2), folded_only, {"batch_dims": 0}),
        *(OpDef(n, (2, 2), folded_only) for n in ("LessOrEqual", "GreaterOrEqual", "Or")),
    )
}
"""Every operator an :class:`~sdk_core.model.spec.Op` may name, by ONNX name."""

FOLDED = ("Shape", "Range", "ConstantOfShape", "CumSum", "GatherND", "LessOrEqual", "GreaterOrEqual", "Or")
"""The shape-only operators: the core computes them when the spec is built; no framework runs them."""


def attributes(op: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with ONNX's defaults filled in; an unknown attribute is one clear error."""
    spec = OPS[op]
    unknown = sorted(set(given) - set(spec.defaults))
    if unknown:
        known = ", ".join(sorted(spec.defaults)) or "none"
        raise fail(f"{op} has no attribute '{unknown[0]}' (attributes: {known})")
    full = {**spec.defaults, **given}
    if op in ("Conv", "MaxPool", "AveragePool"):
        rank = len(full["kernel_shape"]) if full["kernel_shape"] else None
        full["strides"] = list(full["strides"]) or ([1] * rank if rank else [])
    return full
