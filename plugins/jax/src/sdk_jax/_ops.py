"""Operator nodes in JAX: every operator of :data:`sdk_core.model.ops.OPS` but the folded ones
(ONNX's semantics, as :mod:`sdk_core.model.ops_ref` computes them) in ``jax.numpy`` / ``lax``;
gradients are JAX's own, inside the plugin's jitted step.

``RUN[op](args, a, fdt)`` computes one operator: ``args`` one value per ONNX input (``None`` for
an omitted one), stored constants as NumPy arrays (float ones already in the float dtype
``fdt``), so that shapes, axes and pads stay static when the step is traced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sdk_core import ModelSpec
from sdk_core.model import ops_ref as R

from ._layers import Apply, _nchw, _nhwc, _pool

Args = Sequence[Any]
Attrs = dict[str, Any]
INT = jax.dtypes.canonicalize_dtype(np.int64)  # int32 unless jax_enable_x64


def _given(args: Args, k: int) -> Any:
    return args[k] if len(args) > k else None


def _normalised(index: Any, size: int) -> Any:
    """Negative ONNX indices counted from the end of an axis of ``size``."""
    return jnp.where(index < 0, index + size, index)


# -- elementwise -----------------------------------------------------------------------------
def _div(args: Args, a: Attrs, fdt: Any) -> Any:
    x, y = args
    if jnp.issubdtype(jnp.result_type(x), jnp.integer):  # integers truncate, as ONNX's Div does
        x, y = jnp.broadcast_arrays(*(jnp.asarray(v, INT) for v in (x, y)))
        return lax.div(x, y)
    return x / y


def _pick(first_wins: Callable[[Any, Any], Any]) -> Callable[[Args, Attrs, Any], Any]:
    """Min / Max as a chain of ``where``: ties keep the earlier input (so its gradient goes
    there, as the reference's does) and a NaN propagates."""

    def run(args: Args, a: Attrs, fdt: Any) -> Any:
        out = args[0]
        for x in args[1:]:
            out = jnp.where(first_wins(x, out) | jnp.isnan(x), x, out)
        return out

    return run


def _clip(args: Args, a: Attrs, fdt: Any) -> Any:
    """``where`` rather than max/min: the gradient passes where ``low <= x <= high``, bounds
    included, as the reference's does."""
    out, low, high = args[0], _given(args, 1), _given(args, 2)
    if low is not None:
        out = jnp.where(out < low, jnp.asarray(low, out.dtype), out)
    if high is not None:
        out = jnp.where(out > high, jnp.asarray(high, out.dtype), out)
    return out


def _cast(args: Args, a: Attrs, fdt: Any) -> Any:
    x = jnp.asarray(args[0])
    kind = np.dtype(R.CAST[a["to"]]).kind
    if kind == "f":
        return x.astype(x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else fdt)
    return x.astype(bool if kind == "b" else INT)


# -- reductions and normalisation -----------------------------------------------------------
def _reduce(fn: Callable[..., Any]) -> Callable[[Args, Attrs, Any], Any]:
    def run(args: Args, a: Attrs, fdt: Any) -> Any:
        x = args[0]
        axes = R.reduce_axes([x, _given(args, 1)], a)
        return fn(x, axis=axes, keepdims=bool(a["keepdims"])) if axes else x

    return run


def _layer_norm(args: Args, a: Attrs, fdt: Any) -> Any:
    x, scale, bias = args[0], args[1], _given(args, 2)
    axes = tuple(range(R.axis_of(a["axis"], x.ndim), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + a["epsilon"]) * scale
    return y if bias is None else y + bias


def _batch_norm(args: Args, a: Attrs, fdt: Any) -> Any:
    """Inference form: the stored mean and variance."""
    x, scale, bias, mean, var = args[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / jnp.sqrt(var + a["epsilon"])
    return (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)


# -- shape ------------------------------------------------------------------------------------
def _reshape(args: Args, a: Attrs, fdt: Any) -> Any:
    return jnp.reshape(args[0], R.reshape_target(args[0].shape, args[1].tolist(), a["allowzero"]))


def _flatten(args: Args, a: Attrs, fdt: Any) -> Any:
    x = args[0]
    return jnp.reshape(x, (math.prod(x.shape[: R.axis_of(a["axis"], x.ndim)]), -1))


def _expand(args: Args, a: Attrs, fdt: Any) -> Any:
    return jnp.broadcast_to(args[0], np.broadcast_shapes(args[0].shape, tuple(args[1].tolist())))


def _split(args: Args, a: Attrs, fdt: Any) -> Any:
    x = args[0]
    axis = R.axis_of(a["axis"], x.ndim)
    start, end = R.split_bounds(x.shape[axis], args, a)[a["output"]]
    return lax.slice_in_dim(x, start, end, axis=axis)


def _unsqueeze(args: Args, a: Attrs, fdt: Any) -> Any:
    axes = _given(args, 1) if _given(args, 1) is not None else a["axes"]
    return jnp.expand_dims(args[0], R.axes_of(axes, args[0].ndim + len(axes)))


def _gather(args: Args, a: Attrs, fdt: Any) -> Any:
    data, index = args
    axis = R.axis_of(a["axis"], data.ndim)
    return jnp.take(data, _normalised(index, data.shape[axis]), axis=axis)


def _gather_elements(args: Args, a: Attrs, fdt: Any) -> Any:
    data, index = args
    axis = R.axis_of(a["axis"], data.ndim)
    return jnp.take_along_axis(data, _normalised(index, data.shape[axis]), axis=axis)


def _pad(args: Args, a: Attrs, fdt: Any) -> Any:
    x = args[0]
    widths = R.pad_widths(x.ndim, args)
    if a["mode"] == "constant":
        value = _given(args, 2)
        fill = float(np.asarray(value).reshape(-1)[0]) if value is not None else 0.0
        return jnp.pad(x, widths, mode="constant", constant_values=fill)
    return jnp.pad(x, widths, mode=a["mode"])


# -- spatial (NCHW, pads explicit: the plan resolved auto_pad and ceil_mode) -----------------
def _pads(a: Attrs, spatial: int) -> list[tuple[int, int]]:
    pads = a["pads"] or [0] * (2 * spatial)
    return [(int(pads[i]), int(pads[i + spatial])) for i in range(spatial)]


def _conv(args: Args, a: Attrs, fdt: Any) -> Any:
    x, w, bias = args[0], args[1], _given(args, 2)
    spatial = w.ndim - 2
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=tuple(a["strides"]),
        padding=_pads(a, spatial),
        rhs_dilation=tuple(a["dilations"]),
        feature_group_count=a["group"],
    )  # NC..., OI..., NC...: lax's default dimension numbers, ONNX's layout
    return y if bias is None else y + bias.reshape((1, -1) + (1,) * spatial)


def _max_pool(args: Args, a: Attrs, fdt: Any) -> Any:
    x = args[0]
    kernel, strides, dilations = a["kernel_shape"], a["strides"], a["dilations"]
    pads = _pads(a, len(kernel))
    low = np.asarray(-np.inf, x.dtype)
    tiles = list(kernel) == list(strides) and not any(p for pair in pads for p in pair)
    if tiles and all(d == 1 for d in dilations) and all(n % k == 0 for n, k in zip(x.shape[2:], kernel, strict=True)):
        # windows that tile the input: a reshape and a max, whose backward is elementwise (the
        # select_and_scatter of reduce_window's is slow on XLA's cpu), as the pooling layers do
        split = [d for n, k in zip(x.shape[2:], kernel, strict=True) for d in (n // k, k)]
        return x.reshape(*x.shape[:2], *split).max(tuple(range(3, 3 + 2 * len(kernel), 2)))
    if all(d == 1 for d in dilations):
        window = (1, 1, *kernel)
        return lax.reduce_window(x, low, lax.max, window, (1, 1, *strides), [(0, 0), (0, 0), *pads])
    # JAX has no gradient for reduce_window max with window dilation: take each kernel offset's
    # element of every window, and the first maximum among them (the reference's choice)
    padded = jnp.pad(x, [(0, 0), (0, 0), *pads], constant_values=low)
    sizes = zip(x.shape[2:], kernel, strides, dilations, pads, strict=True)
    spans = [(R.out_size(n, k, s, d, p) - 1) * s + 1 for n, k, s, d, p in sizes]
    parts = []
    for offset in np.ndindex(*kernel):
        begin = [o * d for o, d in zip(offset, dilations, strict=True)]
        end = [b + n for b, n in zip(begin, spans, strict=True)]
        parts.append(lax.slice(padded, (0, 0, *begin), (*x.shape[:2], *end), (1, 1, *strides)))
    taken = jnp.stack(parts)
    first = jnp.argmax(taken, axis=0)
    return jnp.take_along_axis(taken, first[None], axis=0)[0]


def _average_pool(args: Args, a: Attrs, fdt: Any) -> Any:
    x = args[0]
    kernel = a["kernel_shape"]
    pads = [(0, 0), (0, 0), *_pads(a, len(kernel))]
    total = lax.reduce_window(x, np.asarray(0, x.dtype), lax.add, (1, 1, *kernel), (1, 1, *a["strides"]), pads)
    # what each window averages over: a constant, counted as the reference counts it
    ones = np.ones((1, 1) + x.shape[2:], np.float64)
    k_axes = tuple(range(-len(kernel), 0))
    count = R.windows(ones, a, kernel, 1.0 if a["count_include_pad"] else 0.0, past=0.0).sum(axis=k_axes)
    return total / count.astype(x.dtype)


def _unary(fn: Callable[[Any], Any]) -> Callable[[Args, Attrs, Any], Any]:
    return lambda args, a, fdt: fn(args[0])


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[Args, Attrs, Any], Any]:
    return lambda args, a, fdt: fn(args[0], args[1])


RUN: dict[str, Callable[[Args, Attrs, Any], Any]] = {
    "MatMul": _binary(jnp.matmul),
    "Gemm": lambda args, a, fdt: (
        a["alpha"] * ((args[0].T if a["transA"] else args[0]) @ (args[1].T if a["transB"] else args[1]))
        + (a["beta"] * args[2] if _given(args, 2) is not None else 0)
    ),
    "Add": _binary(jnp.add),
    "Sub": _binary(jnp.subtract),
    "Mul": _binary(jnp.multiply),
    "Div": _div,
    "Pow": lambda args, a, fdt: jnp.power(args[0], jnp.asarray(args[1], args[0].dtype)),
    "Sqrt": _unary(jnp.sqrt),
    "Exp": _unary(jnp.exp),
    "Log": _unary(jnp.log),
    "Neg": _unary(jnp.negative),
    "Abs": _unary(jnp.abs),
    "Erf": _unary(jax.scipy.special.erf),
    "Tanh": _unary(jnp.tanh),
    "Sigmoid": _unary(jax.nn.sigmoid),
    "Relu": _unary(jax.nn.relu),
    "LeakyRelu": lambda args, a, fdt: jnp.where(args[0] >= 0, args[0], a["alpha"] * args[0]),
    "Clip": _clip,
    "Min": _pick(lambda x, out: x < out),
    "Max": _pick(lambda x, out: x > out),
    "Where": lambda args, a, fdt: jnp.where(jnp.asarray(args[0], bool), args[1], args[2]),
    "Equal": _binary(jnp.equal),
    "Less": _binary(jnp.less),
    "Greater": _binary(jnp.greater),
    "Not": _unary(jnp.logical_not),
    "And": _binary(jnp.logical_and),
    "Cast": _cast,
    "IsNaN": _unary(jnp.isnan),
    "ReduceMean": _reduce(jnp.mean),
    "ReduceSum": _reduce(jnp.sum),
    "ReduceMax": _reduce(jnp.max),
    "Softmax": lambda args, a, fdt: jax.nn.softmax(args[0], axis=R.axis_of(a["axis"], args[0].ndim)),
    "LogSoftmax": lambda args, a, fdt: jax.nn.log_softmax(args[0], axis=R.axis_of(a["axis"], args[0].ndim)),
    "LayerNormalization": _layer_norm,
    "BatchNormalization": _batch_norm,
    "Reshape": _reshape,
    "Transpose": lambda args, a, fdt: jnp.transpose(args[0], a["perm"] or None),
    "Flatten": _flatten,
    "Squeeze": lambda args, a, fdt: jnp.squeeze(args[0], R.squeeze_axes(args, a, args[0].shape)),
    "Unsqueeze": _unsqueeze,
    "Concat": lambda args, a, fdt: jnp.concatenate(args, axis=R.axis_of(a["axis"], args[0].ndim)),
    "Split": _split,
    "Slice": lambda args, a, fdt: args[0][R.slices(args[0].shape, args)],
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "Expand": _expand,
    "Identity": _unary(lambda x: x),
    "Dropout": _unary(lambda x: x),  # ONNX's inference form
    "Conv": _conv,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _unary(lambda x: x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)),
    "Pad": _pad,
}


# -- channels last: 4-d node values travel NHWC between nodes, as the layers keep them ---------
def _conv_last(args: Args, a: Attrs, fdt: Any) -> Any:
    x, w, bias = args[0], args[1], _given(args, 2)
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=tuple(a["strides"]),
        padding=_pads(a, 2),
        rhs_dilation=tuple(a["dilations"]),
        feature_group_count=a["group"],
        dimension_numbers=("NHWC", "OIHW", "NHWC"),
    )
    return y if bias is None else y + bias


def _max_pool_last(args: Args, a: Attrs, fdt: Any) -> Any:
    x, (kh, kw), (sh, sw) = args[0], a["kernel_shape"], a["strides"]
    pads = _pads(a, 2)
    if kh == kw and sh == sw and not any(p for pair in pads for p in pair):
        return _pool(x, kh, sh, "max")  # the pooling layers' (ONNX's floor mode: ceil_mode became pads)
    low = np.asarray(-np.inf, x.dtype)
    return lax.reduce_window(x, low, lax.max, (1, kh, kw, 1), (1, sh, sw, 1), [(0, 0), *pads, (0, 0)])


def _batch_norm_last(args: Args, a: Attrs, fdt: Any) -> Any:
    x, scale, bias, mean, var = args[:5]
    return (x - mean) * (scale / jnp.sqrt(var + a["epsilon"])) + bias


ELEMENTWISE = {
    *("Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Erf", "Tanh", "Sigmoid"),
    *("Relu", "LeakyRelu", "Clip", "Min", "Max", "Where", "Equal", "Less", "Greater", "Not", "And"),
    *("Cast", "IsNaN", "Identity", "Dropout"),
}
CHANNELS_LAST: dict[str, Callable[[Args, Attrs, Any], Any]] = {
    **{op: RUN[op] for op in ELEMENTWISE},
    "Conv": _conv_last,
    "MaxPool": _max_pool_last,
    "BatchNormalization": _batch_norm_last,
    "GlobalAveragePool": _unary(lambda x: x.mean(axis=(1, 2), keepdims=True)),
}
"""Operators that compute on 4-d values as they travel (NHWC), without the transposes to
ONNX's NCHW and back that XLA's cpu does not always cancel: elementwise ones (permuting every
4-d operand alike keeps broadcasting) and the 2-d spatial ones written for NHWC."""


def _channels_last(plan: Any, args: Args) -> bool:
    """Whether node ``plan`` may run in :data:`CHANNELS_LAST` on ``args`` (4-d node values
    NHWC): its data input is a 4-d node value, and for an elementwise operator every other
    input is a 4-d node value too or one stored value (weights and constants are NCHW)."""
    refs = plan.args
    if plan.op not in CHANNELS_LAST or not refs or refs[0] is None or refs[0][0] != "node" or args[0].ndim != 4:
        return False
    if plan.op == "MaxPool":
        return all(d == 1 for d in plan.attributes["dilations"])
    if plan.op in ("Conv", "BatchNormalization", "GlobalAveragePool"):
        return True
    return all(
        ref is None or (v.ndim == 4 if ref[0] == "node" else np.size(v) == 1) for ref, v in zip(refs, args, strict=True)
    )


def _float_dtype(values: Sequence[Any]) -> Any:
    """The dtype the node computes floats in: the first float among ``values`` (its inputs,
    then the model's weights: the policy's dtype in mixed precision), else float32."""
    for v in values:
        if v is not None and jnp.issubdtype(v.dtype, jnp.floating):
            return v.dtype
    return jnp.float32


def op_fn(spec: ModelSpec, i: int) -> Apply:
    """Node ``i``, an operator node, as an ``apply`` of the executor (4-d values arrive and
    leave NHWC, as the layers keep them; an operator sees ONNX's NCHW unless it runs in
    :data:`CHANNELS_LAST`). A folded node gives ``None``: the nodes reading it hold its value
    as a constant."""
    plan = spec.plans[i]
    if plan is None:
        return lambda params, state, x, training, key: (None, state)
    run, attributes = RUN[plan.op], plan.attributes

    def apply(params, state, x, training, key):
        xs = x if isinstance(x, list) else [x]

        def value(ref: tuple[str, Any], fdt: Any = None) -> Any:
            kind, what = ref
            if kind == "node":
                return xs[what]
            if kind == "weight":
                return params[what] if what in params else state[what]
            return np.asarray(what, fdt) if what.dtype.kind == "f" else what  # float constants: the node's dtype

        live = [value(ref) for ref in plan.args if ref is not None and ref[0] != "const"]
        fdt = _float_dtype([*live, *params.values()])
        args = [None if ref is None else value(ref, fdt) for ref in plan.args]
        if _channels_last(plan, args):
            return CHANNELS_LAST[plan.op](args, attributes, fdt), state
        nodes = [ref is not None and ref[0] == "node" for ref in plan.args]
        args = [_nchw(v) if node and v is not None else v for v, node in zip(args, nodes, strict=True)]
        return _nhwc(run(args, attributes, fdt)), state

    return apply
