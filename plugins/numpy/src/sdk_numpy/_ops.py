"""Operator nodes in NumPy: the core's reference forward (:mod:`sdk_core.model.ops_ref`) and a
hand-written backward for every operator, gradient-checked in float64 by the tests.

``GRAD[op](args, a, out, dy)`` returns one gradient per ONNX input (``None`` where none flows:
integer or bool inputs, constants' positions that never train), each with its input's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sdk_core.model import ops_ref as R
from sdk_core.model.opgraph import OpPlan

from ._layers import Op

Grads = list[Any]
_SQRT_PI = 2.0 / math.sqrt(math.pi)


def unbroadcast(grad: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``grad`` summed over the axes broadcasting added or stretched, to ``shape``."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


def _floats(args: Sequence[Any], grads: Grads) -> Grads:
    """Only float inputs get gradients; each is summed to its input's shape."""
    out: Grads = []
    for x, g in zip(args, grads, strict=False):
        ok = x is not None and g is not None and np.asarray(x).dtype.kind == "f"
        out.append(unbroadcast(np.asarray(g), np.shape(x)).astype(np.asarray(x).dtype, copy=False) if ok else None)
    return out + [None] * (len(args) - len(out))


def _matmul(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x, w = args
    x2 = x[None, :] if x.ndim == 1 else x
    w2 = w[:, None] if w.ndim == 1 else w
    dy2 = dy
    if x.ndim == 1:
        dy2 = np.expand_dims(dy2, -2)
    if w.ndim == 1:
        dy2 = np.expand_dims(dy2, -1)
    dx = dy2 @ np.swapaxes(w2, -1, -2)
    dw = np.swapaxes(x2, -1, -2) @ dy2
    dx = dx[..., 0, :] if x.ndim == 1 else dx
    dw = dw[..., 0] if w.ndim == 1 else dw
    return _floats(args, [dx, dw])


def _gemm(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x, w = args[0], args[1]
    wt = w.T if a["transB"] else w
    dx = a["alpha"] * dy @ wt.T
    dwt = a["alpha"] * x.T @ dy
    grads = [dx, dwt.T if a["transB"] else dwt]
    if len(args) > 2 and args[2] is not None:
        grads.append(a["beta"] * dy)
    return _floats(args, grads)


def _where(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    cond = np.asarray(args[0], bool)
    return _floats(args, [None, np.where(cond, dy, 0), np.where(cond, 0, dy)])


def _minmax(pick: Callable[[Any, Any], Any]) -> Callable[[Sequence[Any], dict, np.ndarray, np.ndarray], Grads]:
    def grad(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
        taken = np.zeros(np.shape(out), bool)  # ties go to the first input, as the winner is one
        grads = []
        for x in args:
            mask = (np.broadcast_to(x, out.shape) == out) & ~taken
            taken |= mask
            grads.append(np.where(mask, dy, 0))
        return _floats(args, grads)

    return grad


def _pow(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x, p = args[0], np.asarray(args[1], args[0].dtype)
    dx = dy * p * np.power(x, p - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dp = dy * out * np.log(np.where(x > 0, x, 1))
    return _floats(args, [dx, dp])


def _clip(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x = args[0]
    inside = np.ones(x.shape, bool)
    if len(args) > 1 and args[1] is not None:
        inside &= x >= args[1]
    if len(args) > 2 and args[2] is not None:
        inside &= x <= args[2]
    return _floats(args, [np.where(inside, dy, 0)])


def _reduce(kind: str) -> Callable[[Sequence[Any], dict, np.ndarray, np.ndarray], Grads]:
    """ReduceSum, ReduceMean or ReduceMax: the output's gradient spread back over the reduced
    axes, evenly (mean), whole (sum), or to the maxima (ties share, as the subgradient allows)."""

    def grad(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
        x = args[0]
        axes = R.reduce_axes(args, a)
        if not axes:
            return _floats(args, [dy])
        keep_dy = dy if a["keepdims"] else np.expand_dims(dy, axes)
        if kind == "max":
            hit = (x == (out if a["keepdims"] else np.expand_dims(out, axes))).astype(x.dtype)
            return _floats(args, [keep_dy * hit / hit.sum(axis=axes, keepdims=True)])
        scale = 1.0 / math.prod(x.shape[i] for i in axes) if kind == "mean" else 1.0
        return _floats(args, [np.broadcast_to(keep_dy * scale, x.shape)])

    return grad


def _softmax(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    axis = R.axis_of(a["axis"], out.ndim)
    return _floats(args, [out * (dy - (dy * out).sum(axis=axis, keepdims=True))])


def _log_softmax(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    axis = R.axis_of(a["axis"], out.ndim)
    return _floats(args, [dy - np.exp(out) * dy.sum(axis=axis, keepdims=True)])


def _layer_norm(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x, scale = args[0], args[1]
    axes = tuple(range(R.axis_of(a["axis"], x.ndim), x.ndim))
    n = math.prod(x.shape[i] for i in axes)
    mean = x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + a["epsilon"])
    xhat = (x - mean) * inv
    dxhat = dy * scale
    dx = (
        inv
        / n
        * (n * dxhat - dxhat.sum(axis=axes, keepdims=True) - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True))
    )
    return _floats(args, [dx, dy * xhat, dy])


def _batch_norm(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x, scale, _, mean, var = args[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1.0 / np.sqrt(var + a["epsilon"])
    xhat = (x - mean.reshape(shape)) * inv.reshape(shape)
    axes = (0, *range(2, x.ndim))
    return _floats(args, [dy * (scale * inv).reshape(shape), (dy * xhat).sum(axis=axes), dy.sum(axis=axes)])


def _reshape_like(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    return _floats(args, [dy.reshape(np.shape(args[0]))])


def _transpose(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    perm = a["perm"] or list(range(dy.ndim - 1, -1, -1))
    return _floats(args, [np.transpose(dy, np.argsort(perm))])


def _concat(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    axis = R.axis_of(a["axis"], dy.ndim)
    cuts = np.cumsum([np.shape(x)[axis] for x in args])[:-1]
    return _floats(args, np.split(dy, cuts, axis=axis))


def _split(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x = args[0]
    axis = R.axis_of(a["axis"], x.ndim)
    start, end = R.split_bounds(x.shape[axis], args, a)[a["output"]]
    dx = np.zeros_like(x)
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, end)
    dx[tuple(index)] = dy
    return _floats(args, [dx])


def _slice(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x = args[0]
    dx = np.zeros_like(x)
    dx[R.slices(x.shape, args)] = dy
    return _floats(args, [dx])


def _gather(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    data, index = args[0], np.asarray(args[1], np.int64)
    axis = R.axis_of(a["axis"], data.ndim)
    index = np.where(index < 0, index + data.shape[axis], index)
    moved = np.moveaxis(np.zeros_like(data), axis, 0)
    dmoved = np.moveaxis(dy, tuple(range(axis, axis + index.ndim)), tuple(range(index.ndim)))
    np.add.at(moved, index, dmoved)
    return _floats(args, [np.moveaxis(moved, 0, axis)])


def _gather_elements(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    data, index = args[0], np.asarray(args[1], np.int64)
    axis = R.axis_of(a["axis"], data.ndim)
    index = np.where(index < 0, index + data.shape[axis], index)
    dx = np.zeros_like(data)
    grid: list[Any] = list(np.indices(index.shape, sparse=True))
    grid[axis] = index
    np.add.at(dx, tuple(grid), dy)
    return _floats(args, [dx])


def _pad(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x = args[0]
    widths = R.pad_widths(x.ndim, args)
    if a["mode"] == "constant":
        return _floats(args, [dy[tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape, strict=True))]])
    # reflect / edge: every padded position came from one input position; send its gradient back
    source = np.pad(np.arange(x.size).reshape(x.shape), widths, mode="reflect" if a["mode"] == "reflect" else "edge")
    dx = np.zeros(x.size, dy.dtype)
    np.add.at(dx, source.reshape(-1), dy.reshape(-1))
    return _floats(args, [dx.reshape(x.shape)])


def _window_back(x_shape: Sequence[int], a: dict, kernel: Sequence[int], dwin: np.ndarray) -> np.ndarray:
    """The input gradient of :func:`ops_ref.windows`: each window's gradient ``(N, C, *out,
    *kernel)`` added back at the positions it read (explicit pads, as the spec gives them)."""
    spatial = len(kernel)
    pads = R.spatial_pads(a, x_shape[2:], kernel)
    strides, dilations = a["strides"], a.get("dilations") or [1] * spatial
    padded = [n + p[0] + p[1] for n, p in zip(x_shape[2:], pads, strict=True)]
    dx = np.zeros((*x_shape[:2], *padded), dwin.dtype)
    outs = dwin.shape[2 : 2 + spatial]
    for offset in np.ndindex(*kernel):
        index = tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, d, n, s in zip(offset, dilations, outs, strides, strict=True)
        )
        dx[(slice(None), slice(None), *index)] += dwin[(Ellipsis, *offset)]
    return dx[(slice(None), slice(None), *(slice(p[0], p[0] + n) for p, n in zip(pads, x_shape[2:], strict=True)))]


def _conv(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x, w = args[0], args[1]
    group, kernel = a["group"], w.shape[2:]
    n, c = x.shape[:2]
    m = w.shape[0]
    outs = dy.shape[2:]
    patches = R.windows(x, a, kernel, 0.0).reshape(n, group, c // group, *outs, -1)
    dyg = dy.reshape(n, group, m // group, *outs)
    weight = w.reshape(group, m // group, c // group, -1)
    dw = np.einsum("ngm...,ngc...k->gmck", dyg, patches, optimize=True).reshape(w.shape)
    dpatches = np.einsum("ngm...,gmck->ngc...k", dyg, weight, optimize=True).reshape(n, c, *outs, *kernel)
    grads = [_window_back(x.shape, a, kernel, dpatches), dw]
    if len(args) > 2 and args[2] is not None:
        grads.append(dy.sum(axis=(0, *range(2, dy.ndim))))
    return _floats(args, grads)


def _max_pool(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x = args[0]
    kernel = a["kernel_shape"]
    view = R.windows(x, a, kernel, -np.inf)
    flat = view.reshape(*view.shape[: -len(kernel)], -1)
    first = flat.argmax(axis=-1)  # the gradient goes to the first maximum of each window
    dwin = np.zeros(flat.shape, dy.dtype)
    np.put_along_axis(dwin, first[..., None], dy[..., None], axis=-1)
    return _floats(args, [_window_back(x.shape, a, kernel, dwin.reshape(view.shape))])


def _average_pool(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    x = args[0]
    kernel = a["kernel_shape"]
    k_axes = tuple(range(-len(kernel), 0))
    ones = np.ones((1, 1) + x.shape[2:], x.dtype)
    count = R.windows(ones, a, kernel, 1.0 if a["count_include_pad"] else 0.0).sum(axis=k_axes)
    dwin = np.broadcast_to((dy / count)[(Ellipsis,) + (None,) * len(kernel)], (*dy.shape, *kernel))
    return _floats(args, [_window_back(x.shape, a, kernel, dwin)])


def _unary(derivative: Callable[[np.ndarray, np.ndarray, dict], np.ndarray]) -> Callable[..., Grads]:
    return lambda args, a, out, dy: _floats(args, [dy * derivative(args[0], out, a)])


def _same(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    return _floats(args, [dy])


def _none(args: Sequence[Any], a: dict, out: np.ndarray, dy: np.ndarray) -> Grads:
    return [None] * len(args)


GRAD: dict[str, Callable[[Sequence[Any], dict, np.ndarray, np.ndarray], Grads]] = {
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Add": lambda args, a, out, dy: _floats(args, [dy, dy]),
    "Sub": lambda args, a, out, dy: _floats(args, [dy, -dy]),
    "Mul": lambda args, a, out, dy: _floats(args, [dy * args[1], dy * args[0]]),
    "Div": lambda args, a, out, dy: _floats(args, [dy / args[1], -dy * out / args[1]]),
    "Pow": _pow,
    "Sqrt": _unary(lambda x, y, a: 0.5 / y),
    "Exp": _unary(lambda x, y, a: y),
    "Log": _unary(lambda x, y, a: 1.0 / x),
    "Neg": _unary(lambda x, y, a: -np.ones_like(x)),
    "Abs": _unary(lambda x, y, a: np.sign(x)),
    "Erf": _unary(lambda x, y, a: _SQRT_PI * np.exp(-x * x)),
    "Tanh": _unary(lambda x, y, a: 1.0 - y * y),
    "Sigmoid": _unary(lambda x, y, a: y * (1.0 - y)),
    "Relu": _unary(lambda x, y, a: (x > 0).astype(x.dtype)),
    "LeakyRelu": _unary(lambda x, y, a: np.where(x >= 0, 1.0, a["alpha"]).astype(x.dtype)),
    "Clip": _clip,
    "Min": _minmax(np.minimum),
    "Max": _minmax(np.maximum),
    "Where": _where,
    "Equal": _none,
    "Less": _none,
    "Greater": _none,
    "Not": _none,
    "And": _none,
    "IsNaN": _none,
    "Cast": lambda args, a, out, dy: _floats(args, [dy] if np.asarray(out).dtype.kind == "f" else [None]),
    "ReduceMean": _reduce("mean"),
    "ReduceSum": _reduce("sum"),
    "ReduceMax": _reduce("max"),
    "Softmax": _softmax,
    "LogSoftmax": _log_softmax,
    "LayerNormalization": _layer_norm,
    "BatchNormalization": _batch_norm,
    "Reshape": _reshape_like,
    "Flatten": _reshape_like,
    "Squeeze": _reshape_like,
    "Unsqueeze": _reshape_like,
    "Transpose": _transpose,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "Expand": lambda args, a, out, dy: _floats(args, [dy]),
    "Identity": _same,
    "Dropout": _same,
    "Conv": _conv,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda args, a, out, dy: _floats(
        args, [np.broadcast_to(dy / math.prod(args[0].shape[2:]), args[0].shape)]
    ),
    "Pad": _pad,
}


class OpNode(Op):
    """An operator node: gathers its ONNX inputs from its node inputs, weights and constants
    (:class:`~sdk_core.model.opgraph.OpPlan`), runs the reference, and sends the gradients
    back to the node inputs and the weights."""

    def __init__(self, plan: OpPlan, dtype: np.dtype) -> None:
        super().__init__("")
        self.plan, self.dtype = plan, dtype
        # constants of float type compute in the model's dtype
        self.consts = [None if c is None else (c.astype(dtype) if c.dtype.kind == "f" else c) for c in plan.consts()]
        self.attributes = {**plan.attributes, "float_dtype": dtype}

    def forward(self, params, x, training):
        xs = x if self.arity > 1 else [x]
        self.args = [
            None if ref is None else xs[ref[1]] if ref[0] == "node" else params[ref[1]] if ref[0] == "weight" else const
            for ref, const in zip(self.plan.args, self.consts, strict=True)
        ]
        self.out = R.run(self.plan.op, self.args, self.attributes)
        return self.out

    def backward(self, params, grads, dy):
        found = GRAD[self.plan.op](self.args, self.attributes, self.out, dy)
        dxs: list[Any] = [None] * self.arity
        for ref, g in zip(self.plan.args, found, strict=False):
            if ref is None or g is None:
                continue
            if ref[0] == "weight":
                grads[ref[1]] = grads[ref[1]] + g if ref[1] in grads else g
            elif ref[0] == "node":
                k = ref[1]
                dxs[k] = g if dxs[k] is None else dxs[k] + g
        self.args = self.out = None  # type: ignore[assignment]
        return dxs if self.arity > 1 else dxs[0]


class FoldedNode(Op):
    """A node the core folded: nothing to run; the nodes reading it hold its value."""

    def forward(self, params, x, training):
        return None

    def backward(self, params, grads, dy):
        return [None] * self.arity if self.arity > 1 else None
