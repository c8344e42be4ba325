"""Operator nodes (:class:`sdk_core.model.spec.Op`) as mindspore cells, with ONNX's semantics
(:mod:`sdk_core.model.ops_ref` gives the numbers) and MindSpore's own autodiff.

An :class:`OpNode` gathers its ONNX inputs (node inputs, its weights as Parameters under their
canonical keys, constants as tensors) and hands them to one cell per operator. Everything a
stored constant decides (axes, shapes, pads, slices) is fixed when the cell is built, so the
compiled step sees static shapes and no Python per operator. Windows (Conv, MaxPool,
AveragePool) are strided slices of the padded input: no oneDNN convolution, whose CPU
reference kernel is slow (see ``_layers.UnfoldConv2d``), and any rank, group or dilation.
"""

from __future__ import annotations

import math
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from sdk_core import ModelSpec
from sdk_core.model import ops_ref as R
from sdk_core.model.opgraph import OpPlan

from ._layers import Tanh

NODE, WEIGHT, CONST, IDS = 0, 1, 2, 3  # where an ONNX input comes from (IDS: the int64 input)
_ALL = 2**31 - 1  # a strided slice's end that keeps a whole axis


class OpNode(nn.Cell):
    """Node ``i`` of ``spec``, an operator node the core did not fold."""

    def __init__(self, spec: ModelSpec, i: int) -> None:
        super().__init__()
        plan, layer = spec.plans[i], spec.layers[i]
        assert plan is not None
        self.merge = layer.merge
        sources, prefix = spec.sources[i], len(spec.node_names[i]) + 1
        trainable = {p.name: p.trainable for p in layer.params(())}
        weights, consts, refs, shapes = [], [], [], []  # shapes: each ONNX input's, None the batch
        for ref in plan.args:
            if ref is None:
                refs.append((CONST, -1))
                shapes.append(None)
            elif ref[0] == "node":
                ids = sources[ref[1]] == -1 and spec.input_dtype == "int64"
                refs.append((IDS if ids else NODE, ref[1]))
                j = sources[ref[1]] + 1  # a value on weights alone (a tied table) has no batch axis
                shapes.append((None, *spec.shapes[j]) if spec.batched[j] else tuple(spec.shapes[j]))
            elif ref[0] == "weight":
                key = ref[1][prefix:]
                shape = layer.weights[key].shape
                weights.append(Parameter(Tensor(np.zeros(shape, np.float32)), name=key, requires_grad=trainable[key]))
                refs.append((WEIGHT, len(weights) - 1))
                shapes.append(tuple(shape))
            else:
                refs.append((CONST, len(consts)))
                consts.append(_tensor(ref[1]))
                shapes.append(np.shape(ref[1]))
        self.refs = tuple(refs)
        self.weights = ParameterTuple(weights)  # named by their keys: canonical "{node}.{key}"
        self.consts = tuple(consts)
        self.fn = _make(plan, shapes, (None, *spec.shapes[i + 1]) if spec.batched[i + 1] else tuple(spec.shapes[i + 1]))

    def construct(self, x):
        xs = x if self.merge else [x]
        args = []
        for kind, k in self.refs:
            if kind == NODE:
                args.append(xs[k])
            elif kind == IDS:
                args.append(ops.cast(xs[k], ms.int64))
            elif kind == WEIGHT:
                args.append(self.weights[k])
            elif k >= 0:
                args.append(self.consts[k])
            else:
                args.append(None)
        return self.fn(args)


class Folded(nn.Cell):
    """A node the core folded: nothing runs; the nodes that read it hold its value."""

    def construct(self, x):
        return x[0] if isinstance(x, (list, tuple)) else x


def _tensor(value: np.ndarray) -> Tensor:
    value = np.asarray(value)
    kind = value.dtype.kind
    return Tensor(value.astype(np.float32 if kind == "f" else np.bool_ if kind == "b" else np.int64))


# -- elementwise ------------------------------------------------------------------------------------
class Unary(nn.Cell):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def construct(self, args):
        return self.fn(args[0])


class Binary(nn.Cell):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def construct(self, args):
        return self.fn(args[0], args[1])


class Identity(nn.Cell):
    """A reshape to its own shape, not the tensor itself: a node whose output is a Parameter (the
    holder of a tied table) beside another node on weights alone (a stored table gathered by
    constants) makes MindSpore's autodiff add up gradients of different outputs."""

    def construct(self, args):
        return ops.reshape(args[0], args[0].shape)


class LeakyRelu(nn.Cell):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def construct(self, args):
        x = args[0]
        return ops.where(x >= 0, x, x * self.alpha)


class Clip(nn.Cell):
    """Written with ``where``: the gradient passes where ``low <= x <= high``, bounds included."""

    def __init__(self, low: float | None, high: float | None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def construct(self, args):
        x = args[0]
        if self.low is not None:
            x = ops.where(x < self.low, ops.full_like(x, self.low), x)
        if self.high is not None:
            x = ops.where(x > self.high, ops.full_like(x, self.high), x)
        return x


class Extreme(nn.Cell):
    """Min or Max of any number of inputs; on a tie the first input wins (and its gradient)."""

    def __init__(self, largest: bool) -> None:
        super().__init__()
        self.largest = largest

    def construct(self, args):
        out = args[0]
        for x in args[1:]:
            wins = x > out if self.largest else x < out
            out = ops.where(wins, x, out)
        return out


class Where(nn.Cell):
    def construct(self, args):
        return ops.where(args[0], args[1], args[2])


class Cast(nn.Cell):
    def __init__(self, dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def construct(self, args):
        return ops.cast(args[0], self.dtype)


class Gemm(nn.Cell):
    def __init__(self, a: dict[str, Any]) -> None:
        super().__init__()
        self.alpha, self.beta, self.trans = float(a["alpha"]), float(a["beta"]), bool(a["transB"])

    def construct(self, args):
        w = args[1].T if self.trans else args[1]
        y = ops.matmul(args[0], w) * self.alpha
        if len(args) > 2 and args[2] is not None:
            y = y + args[2] * self.beta
        return y


# -- reductions and normalisation ----------------------------------------------------------------
class Reduce(nn.Cell):
    """ReduceMean / ReduceSum / ReduceMax over fixed axes (MindSpore's ReduceMax gradient
    shares ties, as the reference does)."""

    def __init__(self, kind: str, axes: tuple[int, ...], keepdims: bool) -> None:
        super().__init__()
        self.kind, self.axes, self.keepdims = kind, axes, keepdims

    def construct(self, args):
        x = args[0]
        if not self.axes:
            return x
        if self.kind == "mean":
            return ops.mean(x, self.axes, self.keepdims)
        if self.kind == "sum":
            return ops.sum(x, self.axes, self.keepdims)
        return ops.amax(x, self.axes, self.keepdims)


class Softmax(nn.Cell):
    def __init__(self, axis: int, log: bool) -> None:
        super().__init__()
        self.axis, self.log = axis, log

    def construct(self, args):
        if self.log:
            return ops.log_softmax(args[0], self.axis)
        return ops.softmax(args[0], self.axis)


class LayerNorm(nn.Cell):
    def __init__(self, axes: tuple[int, ...], eps: float) -> None:
        super().__init__()
        self.axes, self.eps = axes, eps

    def construct(self, args):
        x = args[0]
        mean = ops.mean(x, self.axes, True)
        centred = x - mean
        var = ops.mean(centred * centred, self.axes, True)
        y = centred / ops.sqrt(var + self.eps) * args[1]
        if len(args) > 2 and args[2] is not None:
            y = y + args[2]
        return y


class BatchNormInference(nn.Cell):
    """ONNX's inference form: the stored mean and variance; scale and bias train."""

    def __init__(self, rank: int, eps: float) -> None:
        super().__init__()
        self.shape, self.eps = (1, -1) + (1,) * (rank - 2), eps

    def construct(self, args):
        x, scale, bias, mean, var = args[0], args[1], args[2], args[3], args[4]
        inv = scale / ops.sqrt(var + self.eps)
        return (x - mean.reshape(self.shape)) * inv.reshape(self.shape) + bias.reshape(self.shape)


# -- shape -----------------------------------------------------------------------------------------
class Reshape(nn.Cell):
    """Reshape, Flatten, Squeeze, Unsqueeze: the output's shape is known but for the batch."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = (-1, *shape)

    def construct(self, args):
        return args[0].reshape(self.shape)


class Transpose(nn.Cell):
    def __init__(self, perm: tuple[int, ...]) -> None:
        super().__init__()
        self.perm = perm

    def construct(self, args):
        return ops.transpose(args[0], self.perm)


class Concat(nn.Cell):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def construct(self, args):
        return ops.cat(args, self.axis)


class Index(nn.Cell):
    """Split and Slice: one strided slice for the steps forward, then a fixed gather for each
    axis read backwards."""

    def __init__(self, shape: tuple, index: tuple[slice, ...]) -> None:
        super().__init__()
        begin, end, strides, backwards = [0], [_ALL], [1], []
        for axis, (n, s) in enumerate(zip(shape[1:], index[1:], strict=True), 1):
            picked = np.arange(n)[s]
            if s.step is not None and s.step < 0:
                backwards.append((axis, Tensor(picked.astype(np.int64))))
                picked = np.arange(n)
            begin.append(int(picked[0]))
            end.append(int(picked[-1]) + 1)
            strides.append(int(picked[1] - picked[0]) if len(picked) > 1 else 1)
        self.begin, self.end, self.strides = tuple(begin), tuple(end), tuple(strides)
        self.sliced = any(
            b != 0 or e != n or s != 1 for b, e, s, n in zip(begin[1:], end[1:], strides[1:], shape[1:], strict=True)
        )
        self.backwards = tuple(backwards)

    def construct(self, args):
        x = args[0]
        if self.sliced:
            x = ops.strided_slice(x, self.begin, self.end, self.strides)
        for axis, picked in self.backwards:
            x = ops.gather(x, picked, axis)
        return x


class Gather(nn.Cell):
    """Gather along ``axis`` (of size ``size``), negative indices counting from the end."""

    def __init__(self, axis: int, size: int) -> None:
        super().__init__()
        self.axis, self.size = axis, size

    def indices(self, index):
        return ops.where(index < 0, index + self.size, index)

    def construct(self, args):
        return ops.gather(args[0], self.indices(args[1]), self.axis)


class GatherElements(Gather):
    def construct(self, args):
        return ops.gather_elements(args[0], self.axis, self.indices(args[1]))


class Expand(nn.Cell):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = (-1, *shape)

    def construct(self, args):
        return ops.broadcast_to(args[0], self.shape)


class Pad(nn.Cell):
    """Constant padding with ``ops.pad``; reflect and edge as a fixed gather on each padded axis
    (every output position reads one input position)."""

    def __init__(self, widths: list[tuple[int, int]], shape: tuple, mode: str, value: float) -> None:
        super().__init__()
        self.constant, self.value = mode == "constant", value
        self.padding = tuple(p for lo, hi in reversed(widths) for p in (lo, hi))
        np_mode = "reflect" if mode == "reflect" else "edge"
        self.picks = tuple(
            (axis, Tensor(np.pad(np.arange(n), w, mode=np_mode).astype(np.int64)))
            for axis, (n, w) in enumerate(zip(shape, widths, strict=True))
            if w != (0, 0)
        )

    def construct(self, args):
        x = args[0]
        if self.constant:
            return ops.pad(x, self.padding, value=self.value)
        for axis, picked in self.picks:
            x = ops.gather(x, picked, axis)
        return x


# -- windows ---------------------------------------------------------------------------------------
class Windows(nn.Cell):
    """Conv, MaxPool and AveragePool over the windows of the padded input, stacked as patches
    ``(n, c, k, *out)``: in 2-d ``ops.unfold`` (channel-major, as the kernel is stored), in
    other ranks one strided slice per kernel offset. Conv then multiplies by the kernel, in
    2-d as a 1 x 1 convolution (``_layers.UnfoldConv2d``: oneDNN's CPU kernel for any other
    convolution is its slow reference one), grouped as a matmul per group; MaxPool keeps each
    window's first maximum (``ops.max``, whose gradient goes there, as the reference's does;
    MindSpore's own max pool took ten times as long); AveragePool divides the windows' sum by
    the count the reference uses (padding counted or not)."""

    def __init__(self, op: str, a: dict[str, Any], x_shape: tuple, kernel: list[int], weight: tuple | None) -> None:
        super().__init__()
        rank, spatial, channels = len(kernel), [int(n) for n in x_shape[2:]], int(x_shape[1])
        pads = [(a["pads"][k], a["pads"][k + rank]) for k in range(rank)]
        strides, dilations = list(a["strides"]), list(a.get("dilations") or [1] * rank)
        outs = [R.out_size(*v) for v in zip(spatial, kernel, strides, dilations, pads, strict=True)]
        self.op, self.fill = op, float("-inf") if op == "MaxPool" else 0.0
        self.padding = tuple(p for lo, hi in reversed(pads) for p in (lo, hi))
        self.padded = any(self.padding)
        self.unfold = rank == 2
        self.unfold_args = (tuple(kernel), tuple(dilations), 0, tuple(strides))
        self.cuts = tuple(
            (
                (0, 0, *(o * d for o, d in zip(offset, dilations, strict=True))),
                (
                    _ALL,
                    _ALL,
                    *(o * d + (n - 1) * s + 1 for o, d, n, s in zip(offset, dilations, outs, strides, strict=True)),
                ),
                (1, 1, *strides),
            )
            for offset in np.ndindex(*kernel)
        )
        size = math.prod(kernel)
        self.window = (-1, channels, size, *outs)
        self.group = 1
        if op == "Conv":
            m, group = weight[0], a["group"]  # type: ignore[index]
            self.group, self.out, self.bias_shape = group, (-1, m, *outs), (1, m) + (1,) * rank
            self.flat, self.kernel = (-1, channels * size, *outs), (m, -1, 1, 1)  # group 1, 2-d
            self.grouped = (-1, group, channels // group * size, math.prod(outs))
            self.kernel_grouped = (group, m // group, -1)
        if op == "AveragePool":
            ones = np.ones((1, 1, *spatial), np.float32)
            count = R.windows(ones, a, kernel, 1.0 if a["count_include_pad"] else 0.0).sum(axis=tuple(range(-rank, 0)))
            self.inv_count = Tensor((1.0 / count).astype(np.float32))

    def construct(self, args):
        x = args[0]
        if self.padded:
            x = ops.pad(x, self.padding, value=self.fill)
        if self.unfold:
            patches = ops.unfold(x, *self.unfold_args)  # (n, c * k, positions)
        else:
            patches = ops.stack([ops.strided_slice(x, begin, end, step) for begin, end, step in self.cuts], 2)
        if self.op == "MaxPool":
            return ops.max(patches.reshape(self.window), 2)[0]
        if self.op == "AveragePool":
            return ops.sum(patches.reshape(self.window), 2) * self.inv_count
        if self.unfold and self.group == 1:
            y = ops.conv2d(patches.reshape(self.flat), args[1].reshape(self.kernel))
        else:
            y = ops.matmul(args[1].reshape(self.kernel_grouped), patches.reshape(self.grouped)).reshape(self.out)
        if len(args) > 2 and args[2] is not None:
            y = y + args[2].reshape(self.bias_shape)
        return y


class GlobalAveragePool(nn.Cell):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.axes = tuple(range(2, rank))

    def construct(self, args):
        return ops.mean(args[0], self.axes, True)


# -- the table -------------------------------------------------------------------------------------
UNARY = {
    "Sqrt": ops.sqrt,
    "Exp": ops.exp,
    "Log": ops.log,
    "Neg": ops.neg,
    "Abs": ops.abs,
    "Erf": ops.erf,
    "Sigmoid": ops.sigmoid,
    "Relu": ops.relu,
    "Not": ops.logical_not,
    "IsNaN": ops.isnan,
}
BINARY = {
    "MatMul": ops.matmul,
    "Add": ops.add,
    "Sub": ops.sub,
    "Mul": ops.mul,
    "Div": ops.div,
    "Pow": ops.pow,
    "Equal": ops.equal,
    "Less": ops.less,
    "Greater": ops.greater,
    "And": ops.logical_and,
}
CAST = {"f": ms.float32, "i": ms.int64, "b": ms.bool_}


def _make(plan: OpPlan, shapes: list[tuple | None], out: tuple) -> nn.Cell:
    """The cell that computes ``plan.op`` from its ONNX inputs (``shapes``, batch ``None``)."""
    op, a, consts = plan.op, plan.attributes, plan.consts()
    x = shapes[0]
    assert x is not None
    rank = len(x)
    if op in UNARY:
        return Unary(UNARY[op])
    if op in BINARY:
        return Binary(BINARY[op])
    if op in ("Identity", "Dropout"):
        return Identity()
    if op == "Tanh":
        return Unary(Tanh())  # from exp: MindSpore's CPU tanh kernel is off by up to 1e-4
    if op == "LeakyRelu":
        return LeakyRelu(float(a["alpha"]))
    if op == "Clip":
        bound = [None if c is None else float(np.asarray(c).reshape(-1)[0]) for c in (consts + [None, None])[1:3]]
        return Clip(bound[0], bound[1])
    if op in ("Min", "Max"):
        return Extreme(op == "Max")
    if op == "Where":
        return Where()
    if op == "Cast":
        return Cast(CAST[np.dtype(R.CAST[a["to"]]).kind])
    if op == "Gemm":
        return Gemm(a)
    if op.startswith("Reduce"):
        axes = consts[1] if len(consts) > 1 and consts[1] is not None else a.get("axes")
        kept = () if axes is None or not len(axes) else R.axes_of(axes, rank)
        return Reduce(op[6:].lower(), kept, bool(a["keepdims"]))
    if op in ("Softmax", "LogSoftmax"):
        return Softmax(R.axis_of(a["axis"], rank), op == "LogSoftmax")
    if op == "LayerNormalization":
        return LayerNorm(tuple(range(R.axis_of(a["axis"], rank), rank)), float(a["epsilon"]))
    if op == "BatchNormalization":
        return BatchNormInference(rank, float(a["epsilon"]))
    if op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
        return Reshape(tuple(int(d) for d in out[1:]))
    if op == "Transpose":
        return Transpose(tuple(a["perm"] or range(rank - 1, -1, -1)))
    if op == "Concat":
        return Concat(R.axis_of(a["axis"], rank))
    probe = tuple(1 if d is None else int(d) for d in x)
    if op == "Split":
        k = R.axis_of(a["axis"], rank)
        start, end = R.split_bounds(probe[k], consts, a)[a["output"]]
        return Index(probe, tuple(slice(start, end) if i == k else slice(None) for i in range(rank)))
    if op == "Slice":
        return Index(probe, R.slices(probe, consts))
    if op in ("Gather", "GatherElements"):
        k = R.axis_of(a["axis"], rank)
        cls = Gather if op == "Gather" else GatherElements
        return cls(k, probe[k])
    if op == "Expand":
        return Expand(tuple(int(d) for d in out[1:]))
    if op == "Pad":
        value = float(np.asarray(consts[2]).reshape(-1)[0]) if len(consts) > 2 and consts[2] is not None else 0.0
        return Pad(R.pad_widths(rank, consts), probe, a["mode"], value)
    if op in ("Conv", "MaxPool", "AveragePool"):
        weight = shapes[1] if op == "Conv" else None
        kernel = [int(k) for k in (weight[2:] if weight else a["kernel_shape"])]
        return Windows(op, a, x, kernel, weight)
    if op == "GlobalAveragePool":
        return GlobalAveragePool(rank)
    raise NotImplementedError(f"operator {op} has no MindSpore cell")


def op_cell(spec: ModelSpec, i: int) -> nn.Cell:
    """The cell of operator node ``i`` (a :class:`Folded` placeholder where the core folded it)."""
    return Folded() if spec.plans[i] is None else OpNode(spec, i)
