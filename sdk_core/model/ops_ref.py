"""The operators of operator nodes in NumPy: ONNX's semantics, the reference.

``run(op, args, attributes)`` computes one operator the way the ONNX operator documentation
defines it (broadcasting, negative axes, attribute defaults already filled in by
:mod:`sdk_core.model.ops`). The NumPy plugin runs these (and adds their gradients), the core
folds shape-only subgraphs with them, and the conformance kit compares every framework with
them through the NumPy plugin. ``args`` holds one array per ONNX input, ``None`` for an
omitted optional one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Args = Sequence[Any]
Attrs = dict[str, Any]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x: np.ndarray) -> np.ndarray:
    """``erf`` elementwise, exact to float64 (NumPy has none)."""
    return _erf(x).astype(x.dtype, copy=False) if x.size else x.copy()


def axis_of(axis: int, rank: int) -> int:
    """A possibly negative ONNX axis as an index in ``range(rank)``."""
    return axis + rank if axis < 0 else axis


def axes_of(axes: Sequence[int] | np.ndarray | None, rank: int) -> tuple[int, ...]:
    return tuple(sorted(axis_of(int(a), rank) for a in (axes if axes is not None else ())))


# -- products -----------------------------------------------------------------------------
def gemm(args: Args, a: Attrs) -> np.ndarray:
    x, w = args[0], args[1]
    x = x.T if a["transA"] else x
    w = w.T if a["transB"] else w
    y = a["alpha"] * (x @ w)
    if len(args) > 2 and args[2] is not None:
        y = y + a["beta"] * args[2]
    return np.asarray(y, dtype=args[0].dtype)


# -- reductions and normalisation -----------------------------------------------------------
def reduce_axes(args: Args, a: Attrs) -> tuple[int, ...] | None:
    """The axes a Reduce* reduces: the ``axes`` input (opset 18) or attribute; none given
    means all (or none, with ``noop_with_empty_axes``)."""
    axes = args[1] if len(args) > 1 and args[1] is not None else a.get("axes")
    rank = np.ndim(args[0])
    if axes is None or len(axes) == 0:
        return () if a["noop_with_empty_axes"] else tuple(range(rank))
    return axes_of(axes, rank)


def reduce(fn: Callable[..., np.ndarray]) -> Callable[[Args, Attrs], np.ndarray]:
    def run(args: Args, a: Attrs) -> np.ndarray:
        axes = reduce_axes(args, a)
        if not axes:
            return np.asarray(args[0]).copy()
        return np.asarray(fn(args[0], axis=axes, keepdims=bool(a["keepdims"])), dtype=args[0].dtype)

    return run


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return np.asarray(e / e.sum(axis=axis, keepdims=True))


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True)))


def layer_norm(args: Args, a: Attrs) -> np.ndarray:
    x = args[0]
    axes = tuple(range(axis_of(a["axis"], x.ndim), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + a["epsilon"]) * args[1]
    return np.asarray(y + args[2] if len(args) > 2 and args[2] is not None else y)


def batch_norm(args: Args, a: Attrs) -> np.ndarray:
    """Inference form (ONNX's default ``training_mode`` 0): the stored mean and variance."""
    x, scale, bias, mean, var = args[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + a["epsilon"])
    return np.asarray((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape))


# -- shape ------------------------------------------------------------------------------------
def reshape_target(shape_in: Sequence[int], target: Sequence[int], allowzero: int) -> list[int]:
    """ONNX Reshape's target with 0 (copy the input's size, unless ``allowzero``) resolved;
    a -1 is left for NumPy."""
    return [shape_in[i] if (t == 0 and not allowzero) else int(t) for i, t in enumerate(target)]


def slices(shape: Sequence[int], args: Args) -> tuple[slice, ...]:
    """Slice's ``starts``, ``ends``, ``axes`` and ``steps`` inputs as one index per axis,
    clamped as ONNX says."""
    starts, ends = np.asarray(args[1]).tolist(), np.asarray(args[2]).tolist()
    rank = len(shape)
    axes = (
        [axis_of(int(x), rank) for x in args[3]] if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    )
    steps = [int(s) for s in args[4]] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * rank
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        first, stop, step = slice(int(start), int(end), step).indices(shape[axis])
        index[axis] = slice(first, None if stop < 0 else stop, step)  # -1: past the front, stepping back
    return tuple(index)


def split_bounds(size: int, args: Args, a: Attrs) -> list[tuple[int, int]]:
    """The (start, end) of every output of Split along its axis."""
    if len(args) > 1 and args[1] is not None:
        sizes = [int(s) for s in args[1]]
    else:
        parts = a["num_outputs"] or 2
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
    starts = np.cumsum([0, *sizes])
    return [(int(starts[i]), int(starts[i + 1])) for i in range(len(sizes))]


def split(args: Args, a: Attrs) -> np.ndarray:
    x = args[0]
    axis = axis_of(a["axis"], x.ndim)
    start, end = split_bounds(x.shape[axis], args, a)[a["output"]]
    return np.take(x, np.arange(start, end), axis=axis)


def squeeze_axes(args: Args, a: Attrs, shape: Sequence[int]) -> tuple[int, ...]:
    axes = args[1] if len(args) > 1 and args[1] is not None else a.get("axes")
    if axes is None:
        return tuple(i for i, d in enumerate(shape) if d == 1)
    return axes_of(axes, len(shape))


def unsqueeze(args: Args, a: Attrs) -> np.ndarray:
    axes = args[1] if len(args) > 1 and args[1] is not None else a["axes"]
    rank = np.ndim(args[0]) + len(axes)
    return np.expand_dims(args[0], axes_of(axes, rank))


def gather_elements(args: Args, a: Attrs) -> np.ndarray:
    data, index = args[0], np.asarray(args[1], dtype=np.int64)
    axis = axis_of(a["axis"], data.ndim)
    index = np.where(index < 0, index + data.shape[axis], index)
    return np.take_along_axis(data, index, axis=axis)


def gather(args: Args, a: Attrs) -> np.ndarray:
    data, index = args[0], np.asarray(args[1], dtype=np.int64)
    axis = axis_of(a["axis"], data.ndim)
    return np.take(data, np.where(index < 0, index + data.shape[axis], index), axis=axis)


def pad_widths(rank: int, args: Args) -> list[tuple[int, int]]:
    pads = [int(p) for p in args[1]]
    axes = [axis_of(int(x), rank) for x in args[3]] if len(args) > 3 and args[3] is not None else list(range(rank))
    widths = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + len(axes)])
    return widths


def pad(args: Args, a: Attrs) -> np.ndarray:
    x = args[0]
    widths = pad_widths(x.ndim, args)
    mode = a["mode"]
    if mode == "constant":
        value = float(np.asarray(args[2]).reshape(-1)[0]) if len(args) > 2 and args[2] is not None else 0.0
        return np.pad(x, widths, mode="constant", constant_values=value)
    return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")


# -- spatial ---------------------------------------------------------------------------------
def spatial_pads(a: Attrs, size: Sequence[int], kernel: Sequence[int]) -> list[tuple[int, int]]:
    """Each spatial axis' (begin, end) padding, from ``pads`` or ``auto_pad``."""
    strides, dilations = a["strides"], a.get("dilations") or [1] * len(size)
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            low = total // 2 if a["auto_pad"] == "SAME_UPPER" else total - total // 2
            out.append((low, total - low))
        return out
    if a["auto_pad"] == "VALID":
        return [(0, 0)] * len(size)
    pads = a["pads"] or [0] * (2 * len(size))
    return [(pads[i], pads[i + len(size)]) for i in range(len(size))]


def out_size(n: int, k: int, s: int, d: int, pads: tuple[int, int], ceil: bool = False) -> int:
    span = n + pads[0] + pads[1] - ((k - 1) * d + 1)
    return (-(-span // s) if ceil else span // s) + 1


def windows(x: np.ndarray, a: Attrs, kernel: Sequence[int], fill: float, past: float | None = None) -> np.ndarray:
    """``(N, C, *out, *kernel)``: every window of the padded input (strides, dilations). The
    padding holds ``fill``; what ``ceil_mode`` reads past it holds ``past`` (default ``fill``)."""
    size = x.shape[2:]
    pads = spatial_pads(a, size, kernel)
    strides, dilations = a["strides"], a.get("dilations") or [1] * len(size)
    outs = [
        out_size(n, k, s, d, p, bool(a.get("ceil_mode")))
        for n, k, s, d, p in zip(size, kernel, strides, dilations, pads, strict=True)
    ]
    extra = [
        max((o - 1) * s + (k - 1) * d + 1 - (n + p[0] + p[1]), 0)
        for o, s, k, d, n, p in zip(outs, strides, kernel, dilations, size, pads, strict=True)
    ]
    padded = np.pad(x, [(0, 0), (0, 0)] + list(pads), constant_values=fill)
    if any(extra):
        widths = [(0, 0), (0, 0)] + [(0, e) for e in extra]
        padded = np.pad(padded, widths, constant_values=fill if past is None else past)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    view = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=tuple(range(2, x.ndim)))
    index = (slice(None), slice(None)) + tuple(
        slice(None, (o - 1) * s + 1, s) for o, s in zip(outs, strides, strict=True)
    )
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]


def conv(args: Args, a: Attrs) -> np.ndarray:
    x, w = args[0], args[1]
    group, kernel = a["group"], w.shape[2:]
    patches = windows(x, a, kernel, 0.0)  # (N, C, *out, *k)
    n, c = x.shape[:2]
    m = w.shape[0]
    outs = patches.shape[2 : 2 + len(kernel)]
    patches = patches.reshape(n, group, c // group, *outs, -1)
    weight = w.reshape(group, m // group, c // group, -1)
    y = np.einsum("ngc...k,gmck->ngm...", patches, weight, optimize=True).reshape(n, m, *outs)
    if len(args) > 2 and args[2] is not None:
        y = y + args[2].reshape((1, m) + (1,) * len(kernel))
    return np.asarray(y, dtype=x.dtype)


def max_pool(args: Args, a: Attrs) -> np.ndarray:
    x = args[0]
    kernel = a["kernel_shape"]
    view = windows(x, a, kernel, -np.inf)
    return np.asarray(view.max(axis=tuple(range(-len(kernel), 0))), dtype=x.dtype)


def average_pool(args: Args, a: Attrs) -> np.ndarray:
    x = args[0]
    kernel = a["kernel_shape"]
    k_axes = tuple(range(-len(kernel), 0))
    total = windows(x, a, kernel, 0.0).sum(axis=k_axes)
    ones = np.ones((1, 1) + x.shape[2:], x.dtype)  # what each window averages over
    count = windows(ones, a, kernel, 1.0 if a["count_include_pad"] else 0.0, past=0.0).sum(axis=k_axes)
    return np.asarray(total / count, dtype=x.dtype)


# -- the table ---------------------------------------------------------------------------------
def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[Args, Attrs], np.ndarray]:
    return lambda args, a: np.asarray(fn(args[0], args[1]))


def _unary(fn: Callable[[Any], Any]) -> Callable[[Args, Attrs], np.ndarray]:
    return lambda args, a: np.asarray(fn(args[0]))


def _variadic(fn: Callable[[Any, Any], Any]) -> Callable[[Args, Attrs], np.ndarray]:
    def run(args: Args, a: Attrs) -> np.ndarray:
        out = args[0]
        for arg in args[1:]:
            out = fn(out, arg)
        return np.asarray(out)

    return run


def _clip(args: Args, a: Attrs) -> np.ndarray:
    x = args[0]
    low = args[1] if len(args) > 1 and args[1] is not None else None
    high = args[2] if len(args) > 2 and args[2] is not None else None
    out = x if low is None else np.maximum(x, np.asarray(low, x.dtype))
    return np.asarray(out if high is None else np.minimum(out, np.asarray(high, x.dtype)))


CAST = {1: np.float32, 10: np.float16, 11: np.float64, 16: np.float32, 6: np.int64, 7: np.int64, 9: np.bool_}


def cast(args: Args, a: Attrs) -> np.ndarray:
    """Cast to ONNX's ``to``: the float types to the model's float dtype (the input's when it is
    a float, else float32), the ints to int64, bool to bool."""
    x = np.asarray(args[0])
    target: Any = CAST[a["to"]]
    if np.issubdtype(target, np.floating):
        target = x.dtype if x.dtype.kind == "f" else a.get("float_dtype", np.float32)
    return x.astype(target)


RUN: dict[str, Callable[[Args, Attrs], np.ndarray]] = {
    "MatMul": _binary(np.matmul),
    "Gemm": gemm,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": lambda args, a: np.asarray(
        np.trunc(np.divide(args[0], args[1])).astype(args[0].dtype)  # integers truncate
        if args[0].dtype.kind in "iu"
        else np.divide(args[0], args[1])
    ),
    "Pow": lambda args, a: np.power(args[0], np.asarray(args[1], args[0].dtype)),
    "Sqrt": _unary(np.sqrt),
    "Exp": _unary(np.exp),
    "Log": _unary(np.log),
    "Neg": _unary(np.negative),
    "Abs": _unary(np.abs),
    "Erf": lambda args, a: erf(args[0]),
    "Tanh": _unary(np.tanh),
    "Sigmoid": lambda args, a: (1.0 / (1.0 + np.exp(-args[0]))).astype(args[0].dtype, copy=False),
    "Relu": lambda args, a: np.maximum(args[0], 0).astype(args[0].dtype, copy=False),
    "LeakyRelu": lambda args, a: np.where(args[0] >= 0, args[0], a["alpha"] * args[0]).astype(args[0].dtype),
    "Clip": _clip,
    "Min": _variadic(np.minimum),
    "Max": _variadic(np.maximum),
    "Where": lambda args, a: np.asarray(np.where(np.asarray(args[0], bool), args[1], args[2])),
    "Equal": _binary(np.equal),
    "Less": _binary(np.less),
    "Greater": _binary(np.greater),
    "Not": _unary(np.logical_not),
    "And": _binary(np.logical_and),
    "Cast": cast,
    "IsNaN": _unary(np.isnan),
    "ReduceMean": reduce(np.mean),
    "ReduceSum": reduce(np.sum),
    "ReduceMax": reduce(np.max),
    "Softmax": lambda args, a: softmax(args[0], axis_of(a["axis"], args[0].ndim)),
    "LogSoftmax": lambda args, a: log_softmax(args[0], axis_of(a["axis"], args[0].ndim)),
    "LayerNormalization": layer_norm,
    "BatchNormalization": batch_norm,
    "Reshape": lambda args, a: np.reshape(
        args[0], reshape_target(args[0].shape, np.asarray(args[1]).tolist(), a["allowzero"])
    ),
    "Transpose": lambda args, a: np.transpose(args[0], a["perm"] or None),
    "Flatten": lambda args, a: np.reshape(
        args[0], (int(np.prod(args[0].shape[: axis_of(a["axis"], args[0].ndim)])), -1)
    ),
    "Squeeze": lambda args, a: np.squeeze(args[0], squeeze_axes(args, a, args[0].shape)),
    "Unsqueeze": unsqueeze,
    "Concat": lambda args, a: np.concatenate(args, axis=axis_of(a["axis"], np.ndim(args[0]))),
    "Split": split,
    "Slice": lambda args, a: np.asarray(args[0])[slices(np.shape(args[0]), args)].copy(),
    "Gather": gather,
    "GatherElements": gather_elements,
    "Expand": lambda args, a: np.broadcast_to(
        args[0], np.broadcast_shapes(np.shape(args[0]), tuple(int(s) for s in args[1]))
    ).copy(),
    "Identity": lambda args, a: np.asarray(args[0]).copy(),
    "Dropout": lambda args, a: np.asarray(args[0]).copy(),  # ONNX's default: not training
    "Conv": conv,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": lambda args, a: args[0].mean(axis=tuple(range(2, args[0].ndim)), keepdims=True),
    "Pad": pad,
    # shape-only operators: folded into constants when the spec is built
    "Shape": lambda args, a: np.asarray(np.shape(args[0])[a["start"] : a["end"]], np.int64),
    "Range": lambda args, a: np.arange(args[0].item(), args[1].item(), args[2].item()).astype(
        np.asarray(args[0]).dtype
    ),
    "ConstantOfShape": lambda args, a: np.full(
        [int(s) for s in args[0]], a["value"], dtype=np.asarray(a["value"]).dtype
    ),
    "CumSum": lambda args, a: cumsum(args[0], int(np.asarray(args[1]).reshape(())), a),
    "GatherND": lambda args, a: gather_nd(np.asarray(args[0]), np.asarray(args[1]), int(a["batch_dims"])),
    "LessOrEqual": lambda args, a: np.less_equal(args[0], args[1]),
    "GreaterOrEqual": lambda args, a: np.greater_equal(args[0], args[1]),
    "Or": lambda args, a: np.logical_or(args[0], args[1]),
}


def gather_nd(data: np.ndarray, index: np.ndarray, batch_dims: int) -> np.ndarray:
    """ONNX GatherND: each index row of the last axis picks a slice of ``data``."""
    lead = index.shape[:batch_dims]
    flat_data = data.reshape((-1, *data.shape[batch_dims:])) if batch_dims else data[None]
    flat_index = index.reshape((-1, *index.shape[batch_dims:])) if batch_dims else index[None]
    out = [d[tuple(np.moveaxis(i, -1, 0))] for d, i in zip(flat_data, flat_index, strict=True)]
    result = np.stack(out)
    return result.reshape((*lead, *result.shape[1:])) if batch_dims else result[0]


def cumsum(x: np.ndarray, axis: int, a: Attrs) -> np.ndarray:
    """ONNX CumSum: ``exclusive`` starts each sum at zero, ``reverse`` sums from the end."""
    x = np.asarray(x)
    flipped = np.flip(x, axis) if a["reverse"] else x
    out = np.cumsum(flipped, axis=axis, dtype=x.dtype)
    if a["exclusive"]:
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis)), np.delete(out, -1, axis)], axis=axis)
    return np.flip(out, axis) if a["reverse"] else out


def run(op: str, args: Args, attributes: Attrs) -> np.ndarray:
    """One operator in NumPy, ONNX's semantics (see the module docstring)."""
    return RUN[op](args, attributes)
