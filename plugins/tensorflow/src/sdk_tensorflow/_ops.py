"""Operator nodes in TensorFlow: one function per ONNX operator, ``fn(args, a)``, with the
numbers of the core's NumPy reference (:mod:`sdk_core.model.ops_ref`) and TensorFlow's autodiff
for training (the ops run inside the plugin's ``tf.function`` step).

``args`` holds one value per ONNX input: a tensor (a node's output, a weight, a constant), a
NumPy array for a constant at one of the operator's static positions (shapes, axes, pads, clip
bounds: plain numbers at trace time), or ``None`` for an omitted optional input. Images stay
channels-first, as the spec says; convolutions and pools transpose to channels-last and back,
as TensorFlow's CPU kernels need. :class:`OpLayer` holds a node's weights under their
canonical names, in the canonical layout, so weights, optimizer state and masks need nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sdk_core import ModelSpec
from sdk_core.model import ops_ref as R
from sdk_core.model.ops import OPS

from ._framework import keras, tf

Args = Sequence[Any]
Attrs = dict[str, Any]


def _given(args: Args, i: int) -> Any:
    return args[i] if len(args) > i else None


def _dim(x, axis: int):
    """``x``'s size along ``axis``: a number where it is static, else a tensor."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x, out_type=tf.int64)[axis]


def _common(*xs):
    """``xs`` in one dtype: the first float one's if any is float, else the first's."""
    floats = [x.dtype for x in xs if x.dtype.is_floating]
    target = floats[0] if floats else xs[0].dtype
    return [x if x.dtype == target else tf.cast(x, target) for x in xs]


# -- products and elementwise -------------------------------------------------------------------
def matmul(args: Args, a: Attrs):
    x, w = _common(args[0], args[1])
    x2 = x[None, :] if x.shape.rank == 1 else x
    w2 = w[:, None] if w.shape.rank == 1 else w
    y = tf.linalg.matmul(x2, w2)
    y = y[..., 0, :] if x.shape.rank == 1 else y
    return y[..., 0] if w.shape.rank == 1 else y


def gemm(args: Args, a: Attrs):
    x, w, c = args[0], args[1], _given(args, 2)
    y = a["alpha"] * tf.linalg.matmul(x, w, transpose_b=bool(a["transB"]))
    return y if c is None else y + a["beta"] * c


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[Args, Attrs], Any]:
    return lambda args, a: fn(*_common(args[0], args[1]))


def _unary(fn: Callable[[Any], Any]) -> Callable[[Args, Attrs], Any]:
    return lambda args, a: fn(args[0])


def _variadic(fn: Callable[[Any, Any], Any]) -> Callable[[Args, Attrs], Any]:
    def run(args: Args, a: Attrs):
        xs = _common(*args)
        out = xs[0]
        for x in xs[1:]:  # ties go to the earlier input, as in the reference's gradient
            out = fn(out, x)
        return out

    return run


def div(args: Args, a: Attrs):
    x, y = _common(args[0], args[1])
    return x / y if x.dtype.is_floating else tf.truncatediv(x, y)  # integers truncate


def clip(args: Args, a: Attrs):
    x, low, high = args[0], _given(args, 1), _given(args, 2)
    out = x if low is None else tf.maximum(x, tf.constant(low, x.dtype))
    return out if high is None else tf.minimum(out, tf.constant(high, x.dtype))


def where(args: Args, a: Attrs):
    x, y = _common(args[1], args[2])
    return tf.where(tf.cast(args[0], tf.bool), x, y)


def cast(args: Args, a: Attrs):
    x, target = args[0], R.CAST[a["to"]]
    if np.issubdtype(target, np.floating):  # the model's float dtype
        return x if x.dtype.is_floating else tf.cast(x, a["float_dtype"])
    return tf.cast(x, tf.bool if target is np.bool_ else tf.int64)


def leaky_relu(args: Args, a: Attrs):
    x = args[0]
    return tf.where(x >= 0, x, a["alpha"] * x)


# -- reductions and normalisation ----------------------------------------------------------------
def _reduce(fn: Callable[..., Any]) -> Callable[[Args, Attrs], Any]:
    def run(args: Args, a: Attrs):
        x = args[0]
        axes = R.reduce_axes([x, _given(args, 1)], a) if x.shape.rank else ()
        return fn(x, axis=list(axes), keepdims=bool(a["keepdims"])) if axes else tf.identity(x)

    return run


def layer_norm(args: Args, a: Attrs):
    x = args[0]
    axes = list(range(R.axis_of(a["axis"], x.shape.rank), x.shape.rank))
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), axis=axes, keepdims=True)
    y = (x - mean) / tf.sqrt(var + a["epsilon"]) * args[1]
    b = _given(args, 2)
    return y if b is None else y + b


def batch_norm(args: Args, a: Attrs):
    """Inference form: the stored mean and variance; scale and bias train."""
    x, scale, bias, mean, var = args[:5]
    shape = [1, -1] + [1] * (x.shape.rank - 2)
    inv = scale / tf.sqrt(var + a["epsilon"])
    return (x - tf.reshape(mean, shape)) * tf.reshape(inv, shape) + tf.reshape(bias, shape)


# -- shape ------------------------------------------------------------------------------------
def _static(shape) -> list[int]:
    """A static shape with the batch axis (``None``) as 1: enough for index arithmetic that
    never touches the batch axis."""
    return [1 if d is None else int(d) for d in shape]


def split(args: Args, a: Attrs):
    x = args[0]
    axis = R.axis_of(a["axis"], x.shape.rank)
    start, end = R.split_bounds(_static(x.shape)[axis], [x, _given(args, 1)], a)[a["output"]]
    return x[(slice(None),) * axis + (slice(start, end),)]


def slice_(args: Args, a: Attrs):
    x = args[0]
    return x[R.slices(_static(x.shape), args)]


def gather(args: Args, a: Attrs):
    data, index = args[0], args[1]
    axis = R.axis_of(a["axis"], data.shape.rank)
    size = _dim(data, axis)
    if isinstance(index, np.ndarray) and isinstance(size, int):  # a stored index: normalised once
        index = tf.constant(np.where(index < 0, index + size, index), tf.int64)
    else:
        index = tf.cast(index, tf.int64)
        index = tf.where(index < 0, index + tf.cast(size, tf.int64), index)
    return tf.gather(data, index, axis=axis)


def gather_elements(args: Args, a: Attrs):
    data, index = args[0], tf.cast(args[1], tf.int64)
    rank = data.shape.rank
    axis = R.axis_of(a["axis"], rank)
    index = tf.where(index < 0, index + tf.cast(_dim(data, axis), tf.int64), index)
    # ONNX reads data[.., index, ..] only where the index tensor has positions
    keep = tuple(
        slice(None) if i == axis or e is None or d is None or e >= d else slice(0, e)
        for i, (d, e) in enumerate(zip(data.shape, index.shape, strict=True))
    )
    data = data[keep]
    if index.shape[0] == 1 and data.shape[0] != 1:  # an index without the batch: the same for every sample
        index = tf.broadcast_to(
            index, tf.concat([tf.shape(data, out_type=tf.int64)[:1], tf.shape(index, out_type=tf.int64)[1:]], 0)
        )
    perm = [i for i in range(rank) if i != axis] + [axis]
    back = list(np.argsort(perm))
    out = tf.gather(tf.transpose(data, perm), tf.transpose(index, perm), batch_dims=rank - 1, axis=rank - 1)
    return tf.transpose(out, back)


# -- spatial ---------------------------------------------------------------------------------
def _pad_spatial(x, pads: Sequence[int], fill: float):
    n = len(pads) // 2
    if not any(pads):
        return x
    widths = [[0, 0], [0, 0]] + [[pads[i], pads[i + n]] for i in range(n)]
    return tf.pad(x, widths, constant_values=tf.constant(fill, x.dtype))


def _last(x):
    """Channels-first to channels-last."""
    return tf.transpose(x, [0, *range(2, x.shape.rank), 1])


def _first(x):
    """Channels-last to channels-first."""
    return tf.transpose(x, [0, x.shape.rank - 1, *range(1, x.shape.rank - 1)])


def _strided(strides: Sequence[int], dilations: Sequence[int]) -> tuple[list[int], bool]:
    """TensorFlow takes strides or dilations, not both: with both, run at stride 1 and
    subsample after (``True``)."""
    both = any(s > 1 for s in strides) and any(d > 1 for d in dilations)
    return ([1] * len(strides) if both else list(strides)), both


def _subsample(y, strides: Sequence[int]):
    """Every ``strides``-th position of a channels-last ``y``."""
    return y[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]


def conv(args: Args, a: Attrs):
    x, w, b = args[0], args[1], _given(args, 2)
    spatial = w.shape.rank - 2
    group, strides, dilations = a["group"], a["strides"], a["dilations"]
    run_strides, both = _strided(strides, dilations)
    x = _last(_pad_spatial(x, a["pads"], 0.0))
    k = tf.transpose(w, [*range(2, 2 + spatial), 1, 0])  # (*kernel, C/group, M)
    channels, m = x.shape[-1], w.shape[0]

    def run(xg, kg):
        return tf.nn.convolution(xg, kg, strides=run_strides, padding="VALID", dilations=dilations)

    if group == 1:
        y = run(x, k)
    elif spatial == 2 and channels == group:  # depthwise: output c * mult + j reads channel c
        kernel = tf.reshape(k, (*k.shape[:2], channels, m // channels))
        y = tf.nn.depthwise_conv2d(x, kernel, [1, *run_strides, 1], "VALID", dilations=dilations)
    else:  # TensorFlow's CPU kernels take no groups: one convolution per group
        xs, ks = tf.split(x, group, axis=-1), tf.split(k, group, axis=-1)
        y = tf.concat([run(xg, kg) for xg, kg in zip(xs, ks, strict=True)], axis=-1)
    if both:
        y = _subsample(y, strides)
    if b is not None:
        y = y + b
    return _first(y)


def _pool(kind: str) -> Callable[[Args, Attrs], Any]:
    def run(args: Args, a: Attrs):
        x, kernel = args[0], list(a["kernel_shape"])
        strides, dilations = a["strides"], a.get("dilations") or [1] * len(kernel)
        run_strides, both = _strided(strides, dilations)
        size = _static(x.shape)[2:]
        padded = _last(_pad_spatial(x, a["pads"], -math.inf if kind == "MAX" else 0.0))
        y = tf.nn.pool(padded, kernel, kind, strides=run_strides, padding="VALID", dilations=dilations)
        if both:
            y = _subsample(y, strides)
        y = _first(y)
        if kind == "MAX":
            return y
        # the window's sum over what it averages: every position, or only the real ones
        ones = np.ones((1, 1, *size), np.float64)
        k_axes = tuple(range(-len(kernel), 0))
        count = R.windows(ones, a, kernel, 1.0 if a["count_include_pad"] else 0.0, past=0.0).sum(axis=k_axes)
        if (count == math.prod(kernel)).all():
            return y
        return y * tf.constant(math.prod(kernel) / count, y.dtype)

    return run


def global_average_pool(args: Args, a: Attrs):
    x = args[0]
    return tf.reduce_mean(x, axis=list(range(2, x.shape.rank)), keepdims=True)


def pad(args: Args, a: Attrs):
    x = args[0]
    widths = R.pad_widths(x.shape.rank, args)
    mode = a["mode"]
    if mode == "constant":
        value = _given(args, 2)
        fill = float(np.asarray(value).reshape(-1)[0]) if value is not None else 0
        return tf.pad(x, widths, constant_values=tf.cast(fill, x.dtype))
    for axis, (lo, hi) in enumerate(widths):
        if mode == "edge":
            parts = [tf.repeat(x[(slice(None),) * axis + (slice(0, 1),)], lo, axis=axis)] if lo else []
            parts.append(x)
            if hi:
                parts.append(tf.repeat(x[(slice(None),) * axis + (slice(-1, None),)], hi, axis=axis))
            x = tf.concat(parts, axis) if len(parts) > 1 else x
            continue
        while lo or hi:  # reflect: as NumPy, at most the axis' size - 1 at a time
            n = x.shape[axis] - 1
            step = [[0, 0]] * x.shape.rank
            step[axis] = [min(lo, n), min(hi, n)]
            x = tf.pad(x, step, mode="REFLECT")
            lo, hi = lo - step[axis][0], hi - step[axis][1]
    return x


def _reshaped(args: Args, a: Attrs, shape: tuple) -> Any:
    """Reshape, Flatten, Squeeze, Unsqueeze: to the output ``shape`` the core inferred (no batch)."""
    return tf.reshape(args[0], [-1, *shape])


RUN: dict[str, Callable[[Args, Attrs], Any]] = {
    "MatMul": matmul,
    "Gemm": gemm,
    "Add": _binary(tf.add),
    "Sub": _binary(tf.subtract),
    "Mul": _binary(tf.multiply),
    "Div": div,
    "Pow": lambda args, a: tf.pow(args[0], tf.cast(args[1], args[0].dtype)),
    "Sqrt": _unary(tf.sqrt),
    "Exp": _unary(tf.exp),
    "Log": _unary(tf.math.log),
    "Neg": _unary(tf.negative),
    "Abs": _unary(tf.abs),
    "Erf": _unary(tf.math.erf),
    "Tanh": _unary(tf.tanh),
    "Sigmoid": _unary(tf.sigmoid),
    "Relu": _unary(tf.nn.relu),
    "LeakyRelu": leaky_relu,
    "Clip": clip,
    "Min": _variadic(tf.minimum),
    "Max": _variadic(tf.maximum),
    "Where": where,
    "Equal": _binary(tf.equal),
    "Less": _binary(tf.less),
    "Greater": _binary(tf.greater),
    "Not": _unary(tf.logical_not),
    "And": lambda args, a: tf.logical_and(tf.cast(args[0], tf.bool), tf.cast(args[1], tf.bool)),
    "Cast": cast,
    "IsNaN": _unary(tf.math.is_nan),
    "ReduceMean": _reduce(tf.reduce_mean),
    "ReduceSum": _reduce(tf.reduce_sum),
    "ReduceMax": _reduce(tf.reduce_max),
    "Softmax": lambda args, a: tf.nn.softmax(args[0], axis=R.axis_of(a["axis"], args[0].shape.rank)),
    "LogSoftmax": lambda args, a: tf.nn.log_softmax(args[0], axis=R.axis_of(a["axis"], args[0].shape.rank)),
    "LayerNormalization": layer_norm,
    "BatchNormalization": batch_norm,
    "Transpose": lambda args, a: tf.transpose(args[0], a["perm"] or None),
    "Concat": lambda args, a: tf.concat(_common(*args), axis=R.axis_of(a["axis"], args[0].shape.rank)),
    "Split": split,
    "Slice": slice_,
    "Gather": gather,
    "GatherElements": gather_elements,
    "Expand": lambda args, a: tf.broadcast_to(
        args[0], tf.broadcast_dynamic_shape(tf.shape(args[0], out_type=tf.int64), tf.constant(args[1], tf.int64))
    ),
    "Identity": _unary(tf.identity),
    "Dropout": _unary(tf.identity),  # ONNX's default: not training
    "Conv": conv,
    "MaxPool": _pool("MAX"),
    "AveragePool": _pool("AVG"),
    "GlobalAveragePool": global_average_pool,
    "Pad": pad,
}
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


class OpLayer(keras.layers.Layer):
    """Operator node ``i`` of ``spec``: gathers its ONNX inputs (the node inputs it is called
    with, in ``spec.sources[i]``'s order less the folded ones, its weights and its constants)
    and runs the operator. Its weights keep their canonical names and layout (:meth:`canonical`)."""

    def __init__(self, spec: ModelSpec, i: int, dtype: str, **kwargs) -> None:
        super().__init__(dtype=dtype, **kwargs)
        self.plan, self.shape = spec.plans[i], spec.shapes[i + 1]
        # the node inputs it is called with: its sources that were not folded away
        live = [k for k, j in enumerate(spec.sources[i]) if spec.dtypes[j + 1] != "folded"]
        self.slot = {k: n for n, k in enumerate(live)}
        self.consts, self.static = self.plan.consts(), OPS[self.plan.op].static
        params = {p.name: p for p in spec.layout()}
        self.params: dict[str, Any] = {}
        for ref in self.plan.args:
            if ref is not None and ref[0] == "weight" and ref[1] not in self.params:
                p = params[ref[1]]
                key = ref[1].rsplit(".", 1)[-1]
                self.params[ref[1]] = self.add_weight(
                    shape=p.shape, initializer="zeros", trainable=p.trainable, name=key
                )  # zeros until the core sets the canonical weights

    def canonical(self) -> dict[str, tuple]:
        """Canonical name -> (variable, no transpose)."""
        return {name: (var, None) for name, var in self.params.items()}

    def call(self, inputs, training=False):
        xs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        args: list[Any] = []
        for p, (ref, const) in enumerate(zip(self.plan.args, self.consts, strict=True)):
            if ref is None:
                args.append(None)
            elif ref[0] == "node":
                args.append(xs[self.slot[ref[1]]])
            elif ref[0] == "weight":
                args.append(self.params[ref[1]].value)
            elif p in self.static or (self.plan.op == "Gather" and p == 1):
                args.append(const)
            else:  # float constants compute in the model's float dtype
                args.append(tf.constant(const, self.compute_dtype if const.dtype.kind == "f" else None))
        if self.plan.op in RESHAPES:
            return _reshaped(args, self.plan.attributes, self.shape)
        return RUN[self.plan.op](args, {**self.plan.attributes, "float_dtype": self.compute_dtype})
