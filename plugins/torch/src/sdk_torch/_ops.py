"""Operator nodes in torch: one function per ONNX operator, ``fn(args, a)``, with the numbers of
the core's NumPy reference (:mod:`sdk_core.model.ops_ref`) and torch's autograd for training.

``args`` holds one value per ONNX input: a tensor (a node's output, a weight, a constant), a
flat list of Python numbers for a constant at one of the operator's static positions (shapes,
axes, pads, clip bounds: plain numbers at trace time, so that torch.compile reads nothing
back from a tensor), or ``None`` for an omitted input. :class:`OpNode` holds a node's weights
under their canonical names, like the layers do, so that weights, optimizer state and masks
need nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdk_core import NotAvailableError
from sdk_core.model import ops_ref as R
from sdk_core.model import spec as S
from sdk_core.model.opgraph import OpPlan
from sdk_core.model.ops import OPS

Args = Sequence[Any]
Attrs = dict[str, Any]


def _given(args: Args, i: int) -> Any:
    return args[i] if len(args) > i else None


# -- products and elementwise -------------------------------------------------------------------
def gemm(args: Args, a: Attrs) -> torch.Tensor:
    x, w, c = args[0], args[1], _given(args, 2)
    x = x.transpose(-1, -2) if a["transA"] else x
    w = w.transpose(-1, -2) if a["transB"] else w
    y = a["alpha"] * (x @ w)
    return y if c is None else y + a["beta"] * c


def div(args: Args, a: Attrs) -> torch.Tensor:
    x, y = args[0], args[1]
    if x.is_floating_point():
        return x / y
    return torch.div(x, y, rounding_mode="trunc")  # integers truncate


def pow_(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    return torch.pow(x, args[1].to(x.dtype))


def leaky_relu(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    return torch.where(x >= 0, x, a["alpha"] * x)  # slope 1 at 0, as the reference


def clip(args: Args, a: Attrs) -> torch.Tensor:
    low, high = _given(args, 1), _given(args, 2)
    low = None if low is None else float(low[0])
    high = None if high is None else float(high[0])
    if low is None and high is None:
        return args[0]
    return torch.clamp(args[0], low, high)


def _pick(greater: bool) -> Callable[[Args, Attrs], torch.Tensor]:
    """Min / Max over any number of inputs; on ties the first input wins (and its gradient)."""

    def run(args: Args, a: Attrs) -> torch.Tensor:
        out = args[0]
        for x in args[1:]:
            better = (x > out) if greater else (x < out)
            out = torch.where(better | torch.isnan(x), x, out)
        return out

    return run


CAST_KINDS = {t: np.dtype(d).kind for t, d in R.CAST.items()}  # f, i or b


def cast(args: Args, a: Attrs) -> torch.Tensor:
    """To the model's float dtype (``float_dtype``; a float input keeps its own), int64 or bool."""
    x, to = args[0], a["to"]
    if CAST_KINDS[to] == "f":
        return x if x.is_floating_point() else x.to(a["float_dtype"])
    return x.to(torch.bool if CAST_KINDS[to] == "b" else torch.long)


# -- reductions and normalisation -------------------------------------------------------------
def _reduce(fn: Callable[..., torch.Tensor]) -> Callable[[Args, Attrs], torch.Tensor]:
    def run(args: Args, a: Attrs) -> torch.Tensor:
        x, given = args[0], _given(args, 1)
        axes = given if given is not None else a["axes"]
        if axes:
            axes = R.axes_of(axes, x.dim())
        else:  # none given: every axis, or none with noop_with_empty_axes (as R.reduce_axes)
            axes = () if a["noop_with_empty_axes"] else tuple(range(x.dim()))
        return x if not axes else fn(x, dim=axes, keepdim=bool(a["keepdims"]))

    return run


def layer_norm(args: Args, a: Attrs) -> torch.Tensor:
    x, scale, bias = args[0], args[1], _given(args, 2)
    shape = x.shape[R.axis_of(a["axis"], x.dim()) :]
    return F.layer_norm(x, shape, scale.expand(shape), None if bias is None else bias.expand(shape), eps=a["epsilon"])


def batch_norm(args: Args, a: Attrs) -> torch.Tensor:
    """Inference form: the stored mean and variance, which never train."""
    x, scale, bias, mean, var = args[:5]
    return F.batch_norm(x, mean.detach(), var.detach(), scale, bias, training=False, eps=a["epsilon"])


# -- shape ------------------------------------------------------------------------------------
def reshape(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    return x.reshape(R.reshape_target(x.shape, args[1], a["allowzero"]))


def transpose(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    return x.permute(a["perm"] or list(range(x.dim() - 1, -1, -1)))


def flatten(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    return x.reshape(math.prod(x.shape[: R.axis_of(a["axis"], x.dim())]), -1)


def squeeze(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    axes = R.squeeze_axes(args, a, x.shape)
    if a.get("axes") is None and _given(args, 1) is None:
        axes = tuple(i for i in axes if i)  # "every size-1 axis" never takes the batch (of 1)
    return x.squeeze(axes) if axes else x


def unsqueeze(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    axes = _given(args, 1) or a["axes"]
    for i in R.axes_of(axes, x.dim() + len(axes)):  # ascending: each lands where it is asked
        x = x.unsqueeze(i)
    return x


def concat(args: Args, a: Attrs) -> torch.Tensor:
    return torch.cat(list(args), dim=R.axis_of(a["axis"], args[0].dim()))


def split(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    axis = R.axis_of(a["axis"], x.dim())
    start, end = _split_bounds(x.shape[axis], [None, _given(args, 1)], a)[a["output"]]
    return x.narrow(axis, start, end - start)


def slice_(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    for axis, s in enumerate(_slices((1, *x.shape[1:]), [None, *args[1:]])):  # never the batch axis
        picked = range(*s.indices(x.shape[axis]))
        if not axis or picked == range(x.shape[axis]):
            continue
        if picked.step > 0:
            x = x[(slice(None),) * axis + (slice(picked.start, picked.stop, picked.step),)]
        else:  # torch slices forward only: flip, then step forward from the mirrored start
            n = x.shape[axis]
            index = slice(n - 1 - picked.start, n - picked[-1], -picked.step)
            x = x.flip(axis)[(slice(None),) * axis + (index,)]
    return x


# The reference's index helpers run on NumPy: under torch.compile they run once, at trace time,
# on the static sizes and constants (their results are constants of the graph).
_slices = torch.compiler.assume_constant_result(lambda shape, args: R.slices(shape, args))
_split_bounds = torch.compiler.assume_constant_result(lambda size, args, a: R.split_bounds(size, args, a))


@torch.compiler.assume_constant_result
def _pad_source(size: int, lo: int, hi: int, mode: str) -> list[int]:
    """The input position each output position of a reflect / edge Pad reads, as np.pad gives it."""
    return np.pad(np.arange(size), (lo, hi), mode="reflect" if mode == "reflect" else "edge").tolist()


def _indices(index: torch.Tensor, size: int) -> torch.Tensor:
    return torch.where(index < 0, index + size, index)


def gather(args: Args, a: Attrs) -> torch.Tensor:
    data, index = args[0], args[1]
    axis = R.axis_of(a["axis"], data.dim())
    picked = torch.index_select(data, axis, _indices(index, data.shape[axis]).reshape(-1))
    return picked.reshape(data.shape[:axis] + index.shape + data.shape[axis + 1 :])


def gather_elements(args: Args, a: Attrs) -> torch.Tensor:
    """torch.gather, with the data and the indices broadcast on the other axes as NumPy's
    take_along_axis does."""
    data, index = args[0], args[1]
    axis = R.axis_of(a["axis"], data.dim())
    index = _indices(index, data.shape[axis])
    both = [max(d, e) for d, e in zip(data.shape, index.shape, strict=True)]
    data = data.expand([d if i == axis else n for i, (d, n) in enumerate(zip(data.shape, both, strict=True))])
    index = index.expand([d if i == axis else n for i, (d, n) in enumerate(zip(index.shape, both, strict=True))])
    return torch.gather(data, axis, index)


def expand(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    return x.expand(torch.broadcast_shapes(x.shape, tuple(args[1])))


def pad(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    widths = R.pad_widths(x.dim(), args)
    if a["mode"] == "constant":
        value = _given(args, 2)
        value = 0.0 if value is None else float(value[0])
        flat = [p for lo_hi in reversed(widths) for p in lo_hi]  # F.pad lists the last axis first
        return F.pad(x, flat, value=value) if any(flat) else x
    # reflect / edge: every position reads one input position, as np.pad gives it
    for axis, (lo, hi) in enumerate(widths):
        if lo or hi:
            source = _pad_source(x.shape[axis], lo, hi, a["mode"])
            x = torch.index_select(x, axis, torch.tensor(source, device=x.device))
    return x


# -- spatial ---------------------------------------------------------------------------------
def _spatial(x: torch.Tensor, what: str) -> int:
    n = x.dim() - 2
    if not 1 <= n <= 3:
        raise NotAvailableError(f"{what} with {n} spatial axes: torch runs 1 to 3")
    return n


def _padded(x: torch.Tensor, a: Attrs, value: float) -> torch.Tensor:
    """``x`` with its explicit ``pads`` ([begin..., end...]) filled with ``value``."""
    pads = a["pads"]
    n = len(pads) // 2
    flat = [p for i in reversed(range(n)) for p in (pads[i], pads[i + n])]
    return F.pad(x, flat, value=value) if any(flat) else x


CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def conv(args: Args, a: Attrs) -> torch.Tensor:
    x, w, b = args[0], args[1], _given(args, 2)
    n = _spatial(x, "Conv")
    pads = a["pads"]
    begin, end = pads[:n], pads[n:]
    if begin == end:  # symmetric: torch pads inside the convolution
        return CONV[n](x, w, b, a["strides"], begin, a["dilations"], a["group"])
    return CONV[n](_padded(x, a, 0.0), w, b, a["strides"], 0, a["dilations"], a["group"])


def max_pool(args: Args, a: Attrs) -> torch.Tensor:
    x = args[0]
    n = _spatial(x, "MaxPool")
    return MAX_POOL[n](_padded(x, a, -math.inf), a["kernel_shape"], a["strides"], 0, a["dilations"])


def average_pool(args: Args, a: Attrs) -> torch.Tensor:
    """The window's sum over what it covers: with ``count_include_pad`` the padding counts,
    without it only the input's own positions."""
    x = args[0]
    n = _spatial(x, "AveragePool")
    pool = lambda t: AVG_POOL[n](t, a["kernel_shape"], a["strides"], 0)
    mean = pool(_padded(x, a, 0.0))
    if a["count_include_pad"] or not any(a["pads"]):
        return mean
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    return mean / pool(_padded(ones, a, 0.0))  # the share of each window that is input


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Args, Attrs], torch.Tensor]:
    return lambda args, a: fn(args[0])


def _binary(fn: Callable[[Any, Any], torch.Tensor]) -> Callable[[Args, Attrs], torch.Tensor]:
    return lambda args, a: fn(args[0], args[1])


def _softmax(fn: Callable[..., torch.Tensor]) -> Callable[[Args, Attrs], torch.Tensor]:
    return lambda args, a: fn(args[0], dim=R.axis_of(a["axis"], args[0].dim()))


RUN: dict[str, Callable[[Args, Attrs], torch.Tensor]] = {
    "MatMul": _binary(torch.matmul),
    "Gemm": gemm,
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": div,
    "Pow": pow_,
    "Sqrt": _unary(torch.sqrt),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Erf": _unary(torch.erf),
    "Tanh": _unary(torch.tanh),
    "Sigmoid": _unary(torch.sigmoid),
    "Relu": _unary(torch.relu),
    "LeakyRelu": leaky_relu,
    "Clip": clip,
    "Min": _pick(greater=False),
    "Max": _pick(greater=True),
    "Where": lambda args, a: torch.where(args[0].bool(), args[1], args[2]),
    "Equal": _binary(torch.eq),
    "Less": _binary(torch.lt),
    "Greater": _binary(torch.gt),
    "Not": _unary(torch.logical_not),
    "And": _binary(torch.logical_and),
    "Cast": cast,
    "IsNaN": _unary(torch.isnan),
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax),  # amax shares the gradient among ties, as the reference
    "Softmax": _softmax(torch.softmax),
    "LogSoftmax": _softmax(torch.log_softmax),
    "LayerNormalization": layer_norm,
    "BatchNormalization": batch_norm,
    "Reshape": reshape,
    "Transpose": transpose,
    "Flatten": flatten,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Concat": concat,
    "Split": split,
    "Slice": slice_,
    "Gather": gather,
    "GatherElements": gather_elements,
    "Expand": expand,
    "Identity": _unary(lambda x: x),
    "Dropout": _unary(lambda x: x),  # ONNX's inference form
    "Conv": conv,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": lambda args, a: args[0].mean(dim=tuple(range(2, args[0].dim())), keepdim=True),
    "Pad": pad,
}


class OpNode(nn.Module):
    """One operator node. Its weights are parameters (buffers where not trainable) under their
    keys, so the module's state-dict names are the canonical ``"{node}.{key}"``; a key with dots
    nests like a layer's submodules. Constants that feed tensors are non-persistent buffers
    (named by input position, which no key can be), the static ones flat lists of numbers."""

    def __init__(self, node: str, layer: S.Op, plan: OpPlan) -> None:
        super().__init__()
        self.fn, self.attributes = RUN[plan.op], plan.attributes
        static = OPS[plan.op].static
        self.refs: list[tuple[str, Any] | None] = []
        for position, ref in enumerate(plan.args):
            if ref is None or ref[0] == "node":
                self.refs.append(ref)
            elif ref[0] == "weight":
                key = ref[1][len(node) + 1 :]
                self._hold(node, key, layer.weights[key])
                self.refs.append(("weight", key.split(".")))
            elif position in static:
                self.refs.append(("static", np.asarray(ref[1]).reshape(-1).tolist()))
            else:
                self.register_buffer(str(position), torch.from_numpy(np.array(ref[1])), persistent=False)
                self.refs.append(("const", str(position)))
        if plan.op == "Cast":  # follows the model's float dtype through .to()
            self.register_buffer("0float", torch.zeros(()), persistent=False)

    def _hold(self, node: str, key: str, weight: S.Weight) -> None:
        *path, last = key.split(".")
        holder: nn.Module = self
        try:
            for part in path:
                if part not in holder._modules:
                    holder.add_module(part, nn.Module())
                holder = holder._modules[part]  # type: ignore[assignment]
            value = torch.zeros(weight.shape)
            if weight.trainable:
                holder.register_parameter(last, nn.Parameter(value))
            else:
                holder.register_buffer(last, value)
        except (KeyError, TypeError, AttributeError) as exc:
            raise NotAvailableError(
                f"node '{node}': weight '{key}' cannot be a torch module attribute ({exc})"
            ) from None

    def _weight(self, path: list[str]) -> torch.Tensor:
        holder: Any = self
        for part in path:
            holder = getattr(holder, part)
        return holder

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        args = [
            None
            if ref is None
            else xs[ref[1]]
            if ref[0] == "node"
            else self._weight(ref[1])
            if ref[0] == "weight"
            else self._buffers[ref[1]]
            if ref[0] == "const"
            else ref[1]
            for ref in self.refs
        ]
        attributes = self.attributes
        if "0float" in self._buffers:
            attributes = {**attributes, "float_dtype": self._buffers["0float"].dtype}
        return self.fn(args, attributes)


class FoldedNode(nn.Module):
    """A node the core folded: nothing runs; the nodes that read it hold its value."""

    def forward(self, *xs: torch.Tensor) -> None:
        return None


def node(name: str, layer: S.Op, plan: OpPlan | None) -> nn.Module:
    return FoldedNode() if plan is None else OpNode(name, layer, plan)
