"""ModelSpec: a framework-neutral network description and the canonical weight layout.

Shapes never include the batch axis. Images are channels-first ``(C, H, W)``; sequences are
``(T, D)``. The canonical layout of every weight is defined here, once:

=====================  ==========================================================
layer                  weights (name: shape)
=====================  ==========================================================
dense                  ``weight: (in, units)``, ``bias: (units,)`` -- ``y = x @ W + b``
conv2d                 ``weight: (filters, in_channels, k, k)``, ``bias: (filters,)``
batchnorm              ``weight, bias, running_mean, running_var: (C,)`` (running_*
                       are buffers, updated as ``r = (1 - momentum) r + momentum batch``
                       with the unbiased batch variance)
layernorm              ``weight, bias: (D,)``
embedding              ``weight: (vocab_size, dim)``, ``position: (max_len, dim)`` if
                       ``max_len`` > 0 (learned positions added to the tokens)
attention              ``{q,k,v,o}.weight: (D, D)``, ``{q,k,v,o}.bias: (D,)``
transformer_block      ``ln1.*``, ``attn.{q,k,v,o}.*``, ``ln2.*``, ``fc1.weight: (D, rD)``,
                       ``fc1.bias``, ``fc2.weight: (rD, D)``, ``fc2.bias`` -- pre-norm:
                       ``x + attn(ln1(x))`` then ``x + fc2(gelu(fc1(ln2(x))))``
=====================  ==========================================================

Full names are ``"{node}.{name}"``, where a node is named by its index in a sequential spec
(``"0.weight"``, ``"3.attn.q.bias"``) and by its ``name`` in a graph spec (``"stem.weight"``,
``"b1_conv2.bias"``). ``gelu`` is the tanh approximation everywhere. ``flatten`` keeps
channels-first order.

A graph spec (residual and branching models) gives nodes a ``name`` and ``inputs``: the merge
layers ``add`` (same shapes) and ``concat`` (along the channel axis: ``C`` of ``(C, H, W)``, the
last axis of ``(features,)`` and ``(T, D)``) take two or more inputs, every other layer one.
Merges and ``global_avg_pool`` have no weights. See :mod:`sdk_core.model.graph` for the wiring.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs
import numpy as np

from ..errors import SpecError
from .graph import INPUT, frees, wire
from .opgraph import Folded, OpPlan, plan_node
from .ops import OPS, Value, attributes
from .optim import number

Shape = tuple[int, ...]
INPUT_DTYPES = ("float32", "int64")
MAX_SPEC_CHARS = 10 * 2**20
INIT_CHUNK = 2**20  # initial weights are drawn this many values (8 MiB of float64) at a time


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key '{key}' appears twice in one object")
        data[key] = value
    return data


# -- validators: messages read "'field' must be ... (got ...)" ---------------------------
def _positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"'{attribute.name}' must be a positive int (got {value!r})")


def _non_negative_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"'{attribute.name}' must be an int >= 0 (got {value!r})")


SAME = -1  # padding "same" until the kernel size turns it into pixels


def _padding(value: int | str) -> int:
    """``"same"`` (kept as :data:`SAME` until construction ends) or an int >= 0."""
    if value == "same":
        return SAME
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"'padding' must be an int >= 0 or 'same' (got {value!r})")
    return value


def _optional_positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive_int(instance, attribute, value)


MAX_EPS = 0.1
"""The largest ``eps`` of a normalization: a guard against dividing by zero, never a scale."""
_eps = number(0.0, MAX_EPS, low_open=True)


def _rate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError(f"'{attribute.name}' must be a number in [0, 1) (got {value!r})")


def _text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise SpecError(f"'{attribute.name}' must be a string (got {value!r})")


def _bool(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"'{attribute.name}' must be true or false (got {value!r})")


@attrs.frozen
class Param:
    """One canonical weight: name, shape, whether the optimizer updates it, how it starts."""

    name: str
    shape: Shape
    trainable: bool = True
    init: str = "glorot"  # glorot | zeros | ones | normal
    fan: tuple[int, int] = (1, 1)


def _linear(prefix: str, n_in: int, n_out: int, bias: bool = True) -> list[Param]:
    params = [Param(f"{prefix}weight", (n_in, n_out), fan=(n_in, n_out))]
    if bias:
        params.append(Param(f"{prefix}bias", (n_out,), init="zeros"))
    return params


def _norm(prefix: str, n: int) -> list[Param]:
    return [Param(f"{prefix}weight", (n,), init="ones"), Param(f"{prefix}bias", (n,), init="zeros")]


class Layer:
    """Base of every layer spec. Subclasses are frozen attrs classes with a ``type`` name.
    A merge layer (``merge = True``) takes two or more inputs and defines :meth:`merge_shape`."""

    type: ClassVar[str] = ""
    merge: ClassVar[bool] = False

    def merge_shape(self, shapes: list[Shape]) -> Shape:
        """A merge layer's output shape for its inputs' shapes (an error naming them if they do not fit)."""
        raise NotImplementedError

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def params(self, shape: Shape) -> list[Param]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **attrs.asdict(self)}  # type: ignore[arg-type]  # subclasses are attrs classes


def _need_ndim(shape: Shape, ndims: Iterable[int], what: str) -> None:
    ndims = tuple(ndims)
    if len(shape) not in ndims:
        raise SpecError(f"needs {what} input (got shape {shape})")


@attrs.frozen
class Dense(Layer):
    type: ClassVar[str] = "dense"
    units: int = attrs.field(validator=_positive_int)
    bias: bool = attrs.field(default=True, validator=_bool)

    def output_shape(self, shape: Shape) -> Shape:
        _need_ndim(shape, range(1, 4), "a (features,) or (T, features)")
        return shape[:-1] + (self.units,)

    def params(self, shape: Shape) -> list[Param]:
        return _linear("", shape[-1], self.units, self.bias)


def _window(size: int, kernel: int, stride: int, padding: int, what: str) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise SpecError(f"input size {size} is smaller than the {what} {kernel} (padding {padding})")
    return out


@attrs.frozen
class Conv2D(Layer):
    type: ClassVar[str] = "conv2d"
    filters: int = attrs.field(validator=_positive_int)
    kernel_size: int = attrs.field(validator=_positive_int)
    stride: int = attrs.field(default=1, validator=_positive_int)
    padding: int = attrs.field(default=0, converter=_padding)
    bias: bool = attrs.field(default=True, validator=_bool)

    def __attrs_post_init__(self) -> None:
        if self.padding == SAME:  # symmetric padding that keeps the size at stride 1
            if self.kernel_size % 2 == 0:
                raise SpecError(f"'padding' 'same' needs an odd 'kernel_size' (got {self.kernel_size})")
            object.__setattr__(self, "padding", (self.kernel_size - 1) // 2)

    def output_shape(self, shape: Shape) -> Shape:
        _need_ndim(shape, (3,), "a (channels, height, width)")
        _, h, w = shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (self.filters, _window(h, k, s, p, "kernel"), _window(w, k, s, p, "kernel"))

    def params(self, shape: Shape) -> list[Param]:
        k2 = self.kernel_size**2
        params = [
            Param(
                "weight",
                (self.filters, shape[0], self.kernel_size, self.kernel_size),
                fan=(shape[0] * k2, self.filters * k2),
            )
        ]
        if self.bias:
            params.append(Param("bias", (self.filters,), init="zeros"))
        return params


@attrs.frozen
class _Pool(Layer):
    pool_size: int = attrs.field(default=2, validator=_positive_int)
    stride: int | None = attrs.field(default=None, validator=_optional_positive_int)

    @property
    def step(self) -> int:
        """The stride actually used: ``stride``, or ``pool_size`` when unset."""
        return self.stride or self.pool_size

    def output_shape(self, shape: Shape) -> Shape:
        _need_ndim(shape, (3,), "a (channels, height, width)")
        c, h, w = shape
        k, s = self.pool_size, self.step
        return (c, _window(h, k, s, 0, "pool"), _window(w, k, s, 0, "pool"))


@attrs.frozen
class MaxPool2D(_Pool):
    type: ClassVar[str] = "max_pool2d"


@attrs.frozen
class AvgPool2D(_Pool):
    type: ClassVar[str] = "avg_pool2d"


@attrs.frozen
class Flatten(Layer):
    type: ClassVar[str] = "flatten"

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


@attrs.frozen
class GlobalAvgPool(Layer):
    """The mean over the positions: ``(C, H, W) -> (C,)`` for images, ``(T, D) -> (D,)`` for sequences."""

    type: ClassVar[str] = "global_avg_pool"

    def output_shape(self, shape: Shape) -> Shape:
        _need_ndim(shape, (2, 3), "a (channels, height, width) or (T, D)")
        return (shape[0],) if len(shape) == 3 else (shape[1],)


def channel_axis(shape: Shape) -> int:
    """The channel axis of a shape without the batch axis: 0 for ``(C, H, W)``, else the last."""
    return 0 if len(shape) == 3 else len(shape) - 1


@attrs.frozen
class Add(Layer):
    """The sum of two or more inputs of one shape (a residual connection)."""

    type: ClassVar[str] = "add"
    merge: ClassVar[bool] = True

    def merge_shape(self, shapes: list[Shape]) -> Shape:
        if any(s != shapes[0] for s in shapes):
            raise SpecError(f"inputs of shapes {', '.join(map(str, shapes))} cannot be added: they differ")
        return shapes[0]


@attrs.frozen
class Concat(Layer):
    """Two or more inputs joined along the channel axis (:func:`channel_axis`)."""

    type: ClassVar[str] = "concat"
    merge: ClassVar[bool] = True

    def merge_shape(self, shapes: list[Shape]) -> Shape:
        axis = channel_axis(shapes[0])
        rest = [s[:axis] + s[axis + 1 :] for s in shapes]
        if any(len(s) != len(shapes[0]) for s in shapes) or any(r != rest[0] for r in rest):
            raise SpecError(
                f"inputs of shapes {', '.join(map(str, shapes))} cannot be joined: "
                f"they must agree on every axis but the channels"
            )
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)


@attrs.frozen
class ReLU(Layer):
    type: ClassVar[str] = "relu"


@attrs.frozen
class GELU(Layer):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""

    type: ClassVar[str] = "gelu"


@attrs.frozen
class Tanh(Layer):
    type: ClassVar[str] = "tanh"


@attrs.frozen
class Sigmoid(Layer):
    type: ClassVar[str] = "sigmoid"


@attrs.frozen
class Softmax(Layer):
    """Softmax over the last axis."""

    type: ClassVar[str] = "softmax"


@attrs.frozen
class Dropout(Layer):
    """Inverted dropout: active in training steps only, identity in inference."""

    type: ClassVar[str] = "dropout"
    rate: float = attrs.field(default=0.5, validator=_rate)


@attrs.frozen
class BatchNorm(Layer):
    """Batch normalization over the channel axis (0 for images, the feature axis for vectors).

    Training normalizes with the biased batch variance and updates the running statistics
    with the unbiased one; inference uses the running statistics. ``eps`` is in (0, 0.1]
    (:data:`MAX_EPS`), ``momentum`` in [0, 1).
    """

    type: ClassVar[str] = "batchnorm"
    eps: float = attrs.field(default=1e-5, validator=_eps)
    momentum: float = attrs.field(default=0.1, validator=_rate)

    def output_shape(self, shape: Shape) -> Shape:
        _need_ndim(shape, (1, 3), "a (features,) or (channels, height, width)")
        return shape

    def params(self, shape: Shape) -> list[Param]:
        c = shape[0]
        return _norm("", c) + [
            Param("running_mean", (c,), trainable=False, init="zeros"),
            Param("running_var", (c,), trainable=False, init="ones"),
        ]


@attrs.frozen
class LayerNorm(Layer):
    """Layer normalization over the last axis; ``eps`` is in (0, 0.1] (:data:`MAX_EPS`)."""

    type: ClassVar[str] = "layernorm"
    eps: float = attrs.field(default=1e-5, validator=_eps)

    def params(self, shape: Shape) -> list[Param]:
        return _norm("", shape[-1])


@attrs.frozen
class Embedding(Layer):
    """Token embedding of int inputs ``(T,)``; with ``max_len`` > 0 learned positions are added."""

    type: ClassVar[str] = "embedding"
    vocab_size: int = attrs.field(validator=_positive_int)
    dim: int = attrs.field(validator=_positive_int)
    max_len: int = attrs.field(default=0, validator=_non_negative_int)

    def output_shape(self, shape: Shape) -> Shape:
        _need_ndim(shape, (1,), "a (tokens,) int")
        if self.max_len and shape[0] > self.max_len:
            raise SpecError(f"sequence length {shape[0]} exceeds 'max_len' {self.max_len}")
        return shape + (self.dim,)

    def params(self, shape: Shape) -> list[Param]:
        params = [Param("weight", (self.vocab_size, self.dim), init="normal")]
        if self.max_len:
            params.append(Param("position", (self.max_len, self.dim), init="normal"))
        return params


def _attention_params(prefix: str, d: int) -> list[Param]:
    return [p for n in "qkvo" for p in _linear(f"{prefix}{n}.", d, d)]


def _check_heads(shape: Shape, num_heads: int) -> None:
    _need_ndim(shape, (2,), "a (T, D)")
    if shape[1] % num_heads:
        raise SpecError(f"model width {shape[1]} is not divisible by 'num_heads' {num_heads}")


@attrs.frozen
class Attention(Layer):
    """Multi-head self-attention ``o(softmax(q k^T / sqrt(d_head) + mask) v)``, no residual."""

    type: ClassVar[str] = "attention"
    num_heads: int = attrs.field(validator=_positive_int)
    causal: bool = attrs.field(default=True, validator=_bool)

    def output_shape(self, shape: Shape) -> Shape:
        _check_heads(shape, self.num_heads)
        return shape

    def params(self, shape: Shape) -> list[Param]:
        return _attention_params("", shape[1])


@attrs.frozen
class TransformerBlock(Layer):
    """Pre-norm GPT block; ``dropout`` applies after attention and after the MLP."""

    type: ClassVar[str] = "transformer_block"
    num_heads: int = attrs.field(validator=_positive_int)
    mlp_ratio: int = attrs.field(default=4, validator=_positive_int)
    causal: bool = attrs.field(default=True, validator=_bool)
    dropout: float = attrs.field(default=0.0, validator=_rate)

    def output_shape(self, shape: Shape) -> Shape:
        _check_heads(shape, self.num_heads)
        return shape

    def params(self, shape: Shape) -> list[Param]:
        d = shape[1]
        hidden = d * self.mlp_ratio
        return (
            _norm("ln1.", d)
            + _attention_params("attn.", d)
            + _norm("ln2.", d)
            + _linear("fc1.", d, hidden)
            + _linear("fc2.", hidden, d)
        )


# -- operator nodes ----------------------------------------------------------------------------
def _one_or_more(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


INITS = ("glorot", "zeros", "ones", "normal")
TENSOR_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value
    ):
        raise SpecError(f"'shape' must be a list of positive ints (got {value!r})")
    return tuple(value)


def _fan(shape: tuple[int, ...]) -> tuple[int, int]:
    """Glorot's fans: ``(in, out)`` of a matrix; a convolution's ``(C/g, M)`` times its window."""
    if len(shape) == 1:
        return (shape[0], shape[0])
    window = math.prod(shape[2:])
    return (shape[0], shape[1]) if len(shape) == 2 else (shape[1] * window, shape[0] * window)


@attrs.frozen
class Weight:
    """A stored tensor an operator node trains: the canonical weight ``"{node}.{key}"``,
    initialised like the layers' weights (``init``: glorot, zeros, ones or normal). With
    ``trainable=False`` it is a buffer the optimizer leaves alone (batch-norm statistics)."""

    shape: tuple[int, ...] = attrs.field(converter=_shape)
    init: str = attrs.field(default="glorot", validator=attrs.validators.in_(INITS))
    trainable: bool = attrs.field(default=True, validator=_bool)


def _array(value: Any) -> np.ndarray:
    """A constant's value from an array or ``{"dtype", "shape", "values"}``."""
    if isinstance(value, dict):
        extra = sorted(set(value) - {"dtype", "shape", "values"})
        if extra or "values" not in value:
            raise SpecError(f"a constant is {{'dtype', 'shape', 'values'}} (got keys {sorted(value)})")
        dtype = value.get("dtype", "float32")
        if dtype not in ("float32", "int64", "bool"):
            raise SpecError(f"a constant's 'dtype' must be float32, int64 or bool (got {dtype!r})")
        try:
            array = np.asarray(value["values"], dtype=dtype).reshape(value.get("shape", [-1]))
        except (TypeError, ValueError) as exc:
            raise SpecError(f"a constant's values do not make its shape: {exc}") from None
        return array
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind not in "fiub" or array.dtype.itemsize > 8:
        raise SpecError(f"a constant must hold floats, ints or bools (got {array.dtype})")
    return array.astype(np.float32 if kind == "f" else np.bool_ if kind == "b" else np.int64)


def _array_eq(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


@attrs.frozen
class Constant:
    """A stored tensor kept in the spec itself, never trained: integers (indices, shapes),
    bools, or small floats (float32 whatever the model's dtype)."""

    array: np.ndarray = attrs.field(converter=_array, eq=attrs.cmp_using(eq=_array_eq))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dtype": str(self.array.dtype),
            "shape": list(self.array.shape),
            "values": self.array.reshape(-1).tolist(),
        }


def _weights(value: Any) -> dict[str, Weight]:
    if not isinstance(value, dict):
        raise SpecError(f"'weights' must map names to weights (got {type(value).__name__})")
    return {
        k: v if isinstance(v, Weight) else Weight(**v) if isinstance(v, dict) else Weight(v) for k, v in value.items()
    }


def _constants(value: Any) -> dict[str, Constant]:
    if not isinstance(value, dict):
        raise SpecError(f"'constants' must map names to constants (got {type(value).__name__})")
    return {k: v if isinstance(v, Constant) else Constant(v) for k, v in value.items()}


def _attribute_value(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value)


def _attributes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"'attributes' must map names to values (got {value!r})")
    for k, v in value.items():
        if not _attribute_value(v):
            raise SpecError(f"attribute '{k}' must be a number, a string or a list of them (got {v!r})")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}


@attrs.frozen
class Op(Layer):
    """An operator node: an ONNX operator (``op``, one of :data:`sdk_core.model.ops.OPS`)
    with its ``attributes`` and its ``inputs``, in ONNX's order: earlier nodes' names,
    ``"input"`` (the model's input), keys of ``weights`` (trained canonical weights,
    ``"{node}.{key}"``) or ``constants`` (stored in the spec: indices, shapes, small floats),
    or ``""`` for an omitted optional input. No ``inputs``: the node before is the only input.

    ONNX's semantics hold (broadcasting, negative axes, attribute defaults); the batch axis
    comes first and stays free. Shapes and dtypes are inferred when the spec is built, and
    shape-only subgraphs are folded (:mod:`sdk_core.model.opgraph`)."""

    type: ClassVar[str] = "op"
    op: str = attrs.field(validator=_text)
    inputs: tuple[str, ...] = attrs.field(default=(), converter=_one_or_more)
    attributes: dict[str, Any] = attrs.field(factory=dict, converter=_attributes)
    weights: dict[str, Weight] = attrs.field(factory=dict, converter=_weights)
    constants: dict[str, Constant] = attrs.field(factory=dict, converter=_constants)

    def __attrs_post_init__(self) -> None:
        if self.op not in OPS:
            raise SpecError(f"unknown operator {self.op!r} (known: {', '.join(sorted(OPS))})")
        if not all(isinstance(n, str) for n in self.inputs):
            raise SpecError(f"'inputs' must be a list of names (got {list(self.inputs)!r})")
        low, high = OPS[self.op].inputs
        count = len(self.inputs) or 1
        if count < low or (high is not None and count > high):
            want = f"{low}" if low == high else f"{low} to {high if high is not None else 'any number of'}"
            raise SpecError(f"{self.op} takes {want} inputs (got {count})")
        for key in (*self.weights, *self.constants):
            if not TENSOR_KEY.fullmatch(key) or key == "input":
                raise SpecError(f"stored tensor name {key!r} must be 1-128 letters, digits, '_', '.' or '-'")
        both = sorted(set(self.weights) & set(self.constants))
        if both:
            raise SpecError(f"'{both[0]}' is both a weight and a constant")
        unused = sorted((set(self.weights) | set(self.constants)) - set(self.inputs))
        if unused:
            raise SpecError(f"stored tensor '{unused[0]}' is not among the inputs")
        attributes(self.op, self.attributes)  # unknown attributes fail here

    @property
    def merge(self) -> bool:  # type: ignore[override]
        return len(self.sources()) > 1

    def sources(self) -> tuple[str, ...]:
        """The node inputs (other nodes, or ``"input"``) among ``inputs``, each once."""
        stored = set(self.weights) | set(self.constants) | {""}
        return tuple(dict.fromkeys(n for n in self.inputs if n not in stored))

    def params(self, shape: Shape) -> list[Param]:
        return [Param(k, w.shape, w.trainable, w.init, _fan(w.shape)) for k, w in self.weights.items()]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "op": self.op, "inputs": list(self.inputs)}
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.weights:
            out["weights"] = {
                k: {"shape": list(w.shape), "init": w.init, "trainable": w.trainable} for k, w in self.weights.items()
            }
        if self.constants:
            out["constants"] = {k: c.to_dict() for k, c in self.constants.items()}
        return out


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type: cls
    for cls in (
        Dense,
        Conv2D,
        MaxPool2D,
        AvgPool2D,
        GlobalAvgPool,
        Flatten,
        Add,
        Concat,
        ReLU,
        GELU,
        Tanh,
        Sigmoid,
        Softmax,
        Dropout,
        BatchNorm,
        LayerNorm,
        Embedding,
        Attention,
        TransformerBlock,
        Op,
    )
}


def layer_from_dict(data: Any) -> Layer:
    """Build one layer from ``{"type": ..., field: value}``; errors name the field."""
    if not isinstance(data, dict):
        raise SpecError(f"must be an object with a 'type' (got {type(data).__name__})")
    kind = data.get("type")
    cls = LAYER_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SpecError(f"unknown layer type {kind!r} (known: {', '.join(LAYER_TYPES)})")
    fields = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]  # every layer type is an attrs class
    extra = sorted(str(k) for k in set(data) - fields - {"type"})
    if extra:
        raise SpecError(f"unknown field '{extra[0]}' (fields: {', '.join(sorted(fields)) or 'none'})")
    try:
        return cls(**{k: v for k, v in data.items() if k != "type"})
    except TypeError as exc:  # a required field is missing
        raise SpecError(str(exc).split(".__init__() ")[-1]) from None


def _input_shape(value: Any) -> Shape:
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise SpecError(f"'input_shape' must be a non-empty list of positive ints (got {value!r})")
    return tuple(value)


def _layers(value: Iterable[Layer]) -> tuple[Layer, ...]:
    return tuple(value)


def _input_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"'inputs' must be a list of node names (got {value!r})")
    return tuple(value)


def _input_dtype(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in INPUT_DTYPES:
        raise SpecError(f"'input_dtype' must be one of {INPUT_DTYPES} (got {value!r})")


def _batched(v: Any) -> bool:
    """Whether a node's value carries the batch axis (every value but one computed from
    weights alone, such as a tied table transposed)."""
    return isinstance(v, Value) and bool(v.shape) and v.shape[0] is None


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _free_axes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SpecError(f"'free_axes' must be a list of input axes (got {value!r})")
    return tuple(sorted(set(value)))


def _inputs(value: Iterable[Iterable[str] | str]) -> tuple[tuple[str, ...], ...]:
    return tuple(_one_or_more(v) for v in value)


@attrs.frozen
class Node:
    """One node of a graph spec: a ``name``, its ``layer`` and the names of its ``inputs``
    (``"input"`` is the model's input; none: the node before)."""

    name: str
    layer: Layer
    inputs: tuple[str, ...] = attrs.field(default=(), converter=_one_or_more)


@attrs.frozen
class ModelSpec:
    """A network: input shape (no batch axis), input dtype and layers, run in order.

    A sequential spec leaves ``names`` and ``inputs`` empty: each layer takes the one before.
    A graph spec (see :meth:`from_nodes`) names every node and may give each its inputs.
    Construction infers every node's shape and raises :class:`SpecError` naming the layer
    (or node), its type and the field or shape that is wrong.

    ``free_axes`` (indices into ``input_shape``) are input axes whose length may change, such
    as an imported transformer's sequence axis: ``input_shape`` holds one length the spec is
    planned for, :meth:`at` plans it for another, and a :class:`~sdk_core.Stack` given
    inputs of another length runs them on a model planned for it, with the same weights.
    """

    input_shape: Shape = attrs.field(converter=_input_shape)
    layers: tuple[Layer, ...] = attrs.field(converter=_layers)
    input_dtype: str = attrs.field(default="float32", validator=_input_dtype)
    name: str = attrs.field(default="", validator=_text)
    names: tuple[str, ...] = attrs.field(default=(), converter=_names, kw_only=True)
    inputs: tuple[tuple[str, ...], ...] = attrs.field(default=(), converter=_inputs, kw_only=True)
    free_axes: tuple[int, ...] = attrs.field(default=(), converter=_free_axes, kw_only=True)
    shapes: tuple[Shape, ...] = attrs.field(init=False, eq=False, repr=False)
    dtypes: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)
    batched: tuple[bool, ...] = attrs.field(init=False, eq=False, repr=False)
    plans: tuple[OpPlan | None, ...] = attrs.field(init=False, eq=False, repr=False)
    sources: tuple[tuple[int, ...], ...] = attrs.field(init=False, eq=False, repr=False)
    frees: tuple[tuple[int, ...], ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.layers:
            raise SpecError("spec has no layers")
        if any(not 0 <= a < len(self.input_shape) for a in self.free_axes):
            raise SpecError(
                f"'free_axes' {list(self.free_axes)} must index the input's axes 0..{len(self.input_shape) - 1} "
                "(the batch axis is always free and not counted)"
            )
        ops_wired = any(isinstance(l, Op) and l.sources() for l in self.layers)
        graph = bool(self.names or self.inputs) or ops_wired
        names = self.names or tuple(str(i) for i in range(len(self.layers)))
        inputs = list(self.inputs or ((),) * len(self.layers))
        if len(names) != len(self.layers) or len(inputs) != len(self.layers):
            raise SpecError(f"spec has {len(self.layers)} layers but {len(names)} names and {len(inputs)} input lists")
        for i, layer in enumerate(self.layers):  # an operator node's node inputs are its op's
            if isinstance(layer, Op) and layer.sources():
                if inputs[i] and tuple(inputs[i]) != layer.sources():
                    raise SpecError(f"node '{names[i]}': its inputs are its operator's ({list(layer.sources())})")
                inputs[i] = layer.sources()
            elif isinstance(layer, Op) and layer.inputs and not inputs[i]:
                inputs[i] = (INPUT,)  # stored tensors alone: it reads no node, so not the one before
        object.__setattr__(self, "names", names if graph else ())
        object.__setattr__(self, "inputs", tuple(inputs) if graph else ())
        sources = wire(names, inputs)
        first = Value((None, *self.input_shape), "int64" if self.input_dtype == "int64" else "float")
        values: list[Value | Folded] = [first]
        plans: list[OpPlan | None] = []
        for i, layer in enumerate(self.layers):
            label = f"node '{names[i]}'" if graph else f"layer {i}"
            if not isinstance(layer, Layer):
                raise SpecError(f"{label}: not a layer spec (got {type(layer).__name__})")
            if not isinstance(layer, Op) and layer.merge != (len(sources[i]) > 1):
                want = "two or more inputs" if layer.merge else "one input"
                raise SpecError(f"{label} ({layer.type}) takes {want} (got {len(sources[i])})")
            try:
                if isinstance(layer, Op):
                    node_inputs = inputs[i] or ((names[i - 1] if i else "input"),)
                    plan, value = plan_node(layer, node_inputs, [values[j + 1] for j in sources[i]], f"{names[i]}.")
                    values.append(value)
                    plans.append(plan)
                    continue
                self._check_layer_inputs(layer, i, sources[i], values)
                ins: list[Shape] = [values[j + 1].shape[1:] for j in sources[i]]  # type: ignore[misc,union-attr]  # float tensors: checked above
                out = layer.merge_shape(ins) if layer.merge else layer.output_shape(ins[0])
                values.append(Value((None, *out), "float"))
                plans.append(None)
            except SpecError as exc:
                what = f"{layer.type} {layer.op}" if isinstance(layer, Op) else layer.type
                raise SpecError(f"{label} ({what}): {exc}") from None
        last = values[-1]
        if not isinstance(last, Value) or last.dtype != "float":
            got = "a folded constant" if isinstance(last, Folded) else last.dtype
            raise SpecError(f"the last node's output must be a float tensor (got {got})")
        if not _batched(last):
            raise SpecError("the last node's output must carry the batch axis (it is computed from weights alone)")
        # without the batch axis; a value computed from weights alone has none to drop
        shapes = [
            (v.shape[1:] if _batched(v) else v.shape) if isinstance(v, Value) else tuple(v.values[0].shape)
            for v in values
        ]
        object.__setattr__(self, "shapes", tuple(shapes))
        object.__setattr__(self, "dtypes", tuple(v.dtype if isinstance(v, Value) else "folded" for v in values))
        object.__setattr__(self, "batched", tuple(_batched(v) for v in values))
        object.__setattr__(self, "plans", tuple(plans))
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "frees", frees(sources))

    def _check_layer_inputs(self, layer: Layer, i: int, sources: tuple[int, ...], values: list[Value | Folded]) -> None:
        """A layer (not an operator node) reads float tensors, the embedding alone the int64 ids."""
        is_embedding = isinstance(layer, Embedding)
        if is_embedding and (i or sources != (-1,)):
            raise SpecError("an embedding must be the first layer")
        ops_read_ids = any(isinstance(l, Op) for l in self.layers)  # Gather on the ids, say
        if not i and is_embedding != (self.input_dtype == "int64") and not (ops_read_ids and not is_embedding):
            raise SpecError("int64 inputs need an embedding first layer, and an embedding needs 'input_dtype' int64")
        for j in sources:
            v = values[j + 1]
            if isinstance(v, Folded):
                raise SpecError("reads a folded constant: layers read computed tensors")
            if not _batched(v):
                raise SpecError("reads a value computed from weights alone (no batch axis): layers read batches")
            if v.dtype != "float" and not is_embedding:
                raise SpecError(
                    "only the embedding takes the int64 token ids"
                    if j == -1
                    else f"reads a {v.dtype} tensor: layers read float tensors"
                )

    @classmethod
    def from_nodes(
        cls,
        input_shape: Iterable[int],
        nodes: Iterable[Node],
        input_dtype: str = "float32",
        name: str = "",
        free_axes: Iterable[int] = (),
    ) -> ModelSpec:
        """A graph spec from :class:`Node` s, in an order where each comes after its inputs
        (``free_axes``: see :class:`ModelSpec`)."""
        nodes = list(nodes)
        if not all(isinstance(n, Node) for n in nodes):
            raise SpecError("from_nodes needs Node(name, layer, inputs) items")
        return cls(
            input_shape=tuple(input_shape),
            layers=[n.layer for n in nodes],
            input_dtype=input_dtype,
            name=name,
            names=[n.name for n in nodes],
            inputs=[n.inputs for n in nodes],
            free_axes=tuple(free_axes),
        )

    @property
    def is_graph(self) -> bool:
        """Whether the nodes are named (a sequential spec's nodes are its layer indices)."""
        return bool(self.names)

    @property
    def node_names(self) -> tuple[str, ...]:
        """Every node's name: its index as text in a sequential spec."""
        return self.names or tuple(str(i) for i in range(len(self.layers)))

    def at(self, input_shape: Iterable[int]) -> ModelSpec:
        """This spec planned for ``input_shape`` (no batch axis), which may differ from
        ``input_shape`` on the ``free_axes`` only. Raises :class:`SpecError` naming
        the axis or the node when it cannot: a fixed axis differs, the graph fails at that
        length, or a weight's shape would change with it."""
        shape = _input_shape(list(input_shape))
        if shape == self.input_shape:
            return self
        if not self._takes(shape):
            raise SpecError(f"input has shape (batch, {', '.join(map(str, shape))}), the model needs {self._needs()}")
        try:
            other = attrs.evolve(self, input_shape=shape)
        except SpecError as exc:
            raise SpecError(f"the model does not run at input shape {shape}: {exc}") from None
        before = {p.name: p.shape for p in self.layout()}
        changed = [p for p in other.layout() if before.get(p.name) != p.shape]
        if changed:
            raise SpecError(
                f"at input shape {shape} weight '{changed[0].name}' would have shape {changed[0].shape}: "
                "its axes are not free"
            )
        return other

    def _takes(self, shape: tuple[int, ...]) -> bool:
        """Whether inputs of ``shape`` (no batch axis) fit: this spec's lengths, or any on a free axis."""
        return len(shape) == len(self.input_shape) and all(
            n > 0 if a in self.free_axes else n == d
            for a, (n, d) in enumerate(zip(shape, self.input_shape, strict=True))
        )

    def _needs(self) -> str:
        """The input shape this spec takes, as errors show it: ``(batch, any, 64)``."""
        return f"(batch, {', '.join('any' if a in self.free_axes else str(d) for a, d in enumerate(self.input_shape))})"

    def input_shape_of(self, i: int) -> Shape:
        """The shape node ``i`` takes (its first input's, for a merge)."""
        return self.shapes[self.sources[i][0] + 1]

    def input_shapes_of(self, i: int) -> list[Shape]:
        return [self.shapes[j + 1] for j in self.sources[i]]

    def node_of(self, weight: str) -> int:
        """The index of the node that owns the canonical weight name ``weight``."""
        head = weight.split(".", 1)[0]
        try:
            return self.node_names.index(head)
        except ValueError:
            raise SpecError(f"weight '{weight}' belongs to no node of the model") from None

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1]

    def layout(self) -> list[Param]:
        """Every canonical weight in order, with its full ``"{index}.{name}"`` name."""
        names = self.node_names
        return [
            attrs.evolve(p, name=f"{names[i]}.{p.name}")
            for i, layer in enumerate(self.layers)
            for p in layer.params(self.input_shape_of(i))
        ]

    def param_count(self, trainable_only: bool = True) -> int:
        return sum(math.prod(p.shape) for p in self.layout() if p.trainable or not trainable_only)

    def init_weights(self, seed: int = 0, dtype: str = "float32") -> dict[str, np.ndarray]:
        """The canonical initial weights for ``seed``: identical for every framework.

        Each tensor is allocated once, in ``dtype``, and filled with float64 draws a chunk at
        a time: the peak is the weights' own size, and the numbers are those of drawing the
        whole tensor in float64 and casting it."""
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        for p in self.layout():
            if p.init not in ("glorot", "normal"):
                out[p.name] = np.full(p.shape, 1.0 if p.init == "ones" else 0.0, dtype=dtype)
                continue
            value = np.empty(p.shape, dtype=dtype)
            flat = value.reshape(-1)  # a view: the draws fill the tensor in C order
            bound = math.sqrt(6.0 / sum(p.fan)) if p.init == "glorot" else 0.0
            for start in range(0, flat.size, INIT_CHUNK):
                n = min(INIT_CHUNK, flat.size - start)
                draw = rng.uniform(-bound, bound, n) if p.init == "glorot" else rng.normal(0.0, 0.02, n)
                flat[start : start + n] = draw
            out[p.name] = value
        return out

    def check_weights(self, weights: Mapping[str, Any], what: str = "weights", dtype: str = "float32") -> None:
        """Raise :class:`SpecError` unless ``weights`` has exactly this layout's names and shapes
        and every array holds floats. The rule for a model of ``dtype``: a float of another
        width (float16, float64) is converted to ``dtype``; an integer, bool or complex array is
        refused, naming the tensor, its stored dtype and ``dtype``."""
        self.check_shapes({name: tuple(np.shape(value)) for name, value in weights.items()}, what)
        for name, value in weights.items():
            if isinstance(value, np.ndarray) and value.dtype.kind != "f":
                raise SpecError(
                    f"{what}: tensor '{name}' is stored as {value.dtype}; the model expects {dtype} "
                    "(a float of another width is converted, an integer is not)"
                )

    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]], what: str = "weights") -> None:
        """Raise :class:`SpecError` unless ``shapes`` (name -> shape, e.g. read from a file's
        header) are exactly this layout's."""
        layout = {p.name: p.shape for p in self.layout()}
        missing = [n for n in layout if n not in shapes]
        extra = [n for n in shapes if n not in layout]
        if missing or extra:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise SpecError(f"{what} do not match the model: {detail}")
        for name, shape in layout.items():
            got = tuple(shapes[name])
            if got != shape:
                raise SpecError(f"{what}: '{name}' has shape {got}, the model needs {shape}")

    def check_input(self, data: Any, finite: bool = False) -> np.ndarray:
        """Return ``data`` as an array of this spec's input dtype, or raise naming what is
        wrong: the shape, a dtype that is no number (strings, complex), a token id outside the
        vocabulary, or (with ``finite``) a NaN or infinite value."""
        try:
            x: np.ndarray = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"input is not an array of numbers: {exc}") from None
        if x.ndim != len(self.input_shape) + 1 or not self._takes(tuple(x.shape[1:])):
            raise SpecError(f"input has shape {tuple(x.shape)}, the model needs {self._needs()}")
        if x.dtype.kind not in "biuf":
            raise SpecError(f"input must hold real numbers (got {x.dtype} values)")
        if self.input_dtype == "int64":
            if not np.issubdtype(x.dtype, np.integer):
                raise SpecError(f"input must hold integer token ids (got {x.dtype})")
            vocab = getattr(self.layers[0], "vocab_size", None)
            if x.size and vocab is not None and (x.min() < 0 or x.max() >= vocab):
                bad = x.min() if x.min() < 0 else x.max()
                raise SpecError(f"input token id {bad} is outside the vocabulary [0, {vocab})")
            return x.astype(np.int64, copy=False)
        if finite and x.dtype.kind == "f":
            rows = max(1, 2**22 // max(math.prod(self.input_shape), 1))  # chunks: a memory-mapped x stays on disk
            for start in range(0, len(x), rows):
                chunk = np.asarray(x[start : start + rows]).reshape(-1, math.prod(self.input_shape))
                if not np.isfinite(chunk).all():
                    sample = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
                    raise SpecError(f"input sample {sample} holds NaN or infinity")
        return x

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            **({"free_axes": list(self.free_axes)} if self.free_axes else {}),
            "layers": [l.to_dict() for l in self.layers]
            if not self.names
            else [
                {"name": n, **({"inputs": list(ins)} if ins and not isinstance(l, Op) else {}), **l.to_dict()}
                for n, ins, l in zip(self.names, self.inputs, self.layers, strict=True)
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        if not isinstance(data, dict):
            raise SpecError(f"spec must be a JSON object (got {type(data).__name__})")
        extra = sorted(set(data) - {"name", "input_shape", "input_dtype", "free_axes", "layers"})
        if extra:
            raise SpecError(f"spec: unknown field '{extra[0]}'")
        if "input_shape" not in data:
            raise SpecError("spec: 'input_shape' is missing")
        layers_data = data.get("layers")
        if not isinstance(layers_data, list):
            raise SpecError(f"spec: 'layers' must be a list (got {type(layers_data).__name__})")
        layers: list[Layer] = []
        names: list[str] = []
        inputs: list[tuple[str, ...]] = []
        for i, item in enumerate(layers_data):
            try:
                if isinstance(item, dict) and item.get("type") == "op":  # its "inputs" are the operator's
                    item = dict(item)
                    names.append(item.pop("name", str(i)))
                    inputs.append(())
                elif isinstance(item, dict) and ("name" in item or "inputs" in item):
                    item = dict(item)
                    names.append(item.pop("name", str(i)))
                    inputs.append(_input_names(item.pop("inputs", [])))
                else:
                    names.append(str(i))
                    inputs.append(())
                layers.append(layer_from_dict(item))
            except SpecError as exc:
                kind = item.get("type") if isinstance(item, dict) else None
                label = f"layer {i} ({kind})" if isinstance(kind, str) and kind in LAYER_TYPES else f"layer {i}"
                raise SpecError(f"{label}: {exc}") from None
        return cls(
            input_shape=data["input_shape"],
            layers=layers,
            input_dtype=data.get("input_dtype", "float32"),
            name=data.get("name", ""),
            names=names
            if any(n != str(i) or ins for i, (n, ins) in enumerate(zip(names, inputs, strict=True)))
            else (),
            inputs=inputs if any(inputs) else (),
            free_axes=data.get("free_axes", ()),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        """A spec from JSON text; every malformed input is one :class:`SpecError`: invalid or
        non-UTF-8 JSON, duplicate keys, integers too long to parse, nesting too deep."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SpecError(f"spec is not UTF-8 text (byte {exc.start})") from None
        if len(text) > MAX_SPEC_CHARS:
            raise SpecError(f"spec is larger than {MAX_SPEC_CHARS:,} characters")
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        except RecursionError:
            raise SpecError("spec is nested too deeply") from None
        except ValueError as exc:  # an integer of thousands of digits, a duplicate key
            raise SpecError(f"spec is not valid: {exc}") from None
        return cls.from_dict(data)
