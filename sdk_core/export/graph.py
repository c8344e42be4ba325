"""A ModelSpec and its canonical weights as an ONNX graph, written with the ``onnx`` package
(no training framework is imported).

Every layer maps to standard ONNX operators; a graph spec's nodes read the values of their
sources, and the merges are ``Add`` (``Sum`` for three or more inputs) and ``Concat`` on the
channel axis. The canonical weight names (``"0.weight"``, ``"3.attn.q.bias"``,
``"stem.weight"``) are the initializer names, so a weight is found in the ONNX file under the
name it has everywhere else; every other value is named ``{hint}/{n}``, so none collides with
a weight. The graph input is ``x`` (``float32``, or ``int64`` token ids), the output ``y``;
the batch axis is the dynamic dimension ``batch``.

Opsets 13 and later are written; operators newer than the opset asked for are spelled out
with older ones (``LayerNormalization`` needs 17, ``Gelu`` 20).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SdkError, SpecError
from ..model import spec as S
from ..model.weights import check_finite
from ..version import __version__
from . import opnodes

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 13
DEFAULT_OPSET = 17
SPEC_KEY = "sdk_core.spec"
VERSION_KEY = "sdk_core.version"


def require_onnx() -> Any:
    """The ``onnx`` module, or an error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise SdkError("ONNX export needs the onnx package: pip install 'sdk-core[onnx]'") from None
    return onnx


def check_opset(opset: Any) -> int:
    """``opset`` as an int the installed onnx package can write, or a one-line error."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise SdkError(f"'opset' must be an int from {MIN_OPSET} to {newest} (got {opset!r})")
    return opset


class Graph:
    """Nodes and initializers of one graph, with unique value names."""

    def __init__(self, opset: int) -> None:
        self.onnx = require_onnx()
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}/{self._count}"

    def const(self, value: Any, hint: str = "const", dtype: Any = np.float32) -> str:
        """A constant initializer; returns its name."""
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, name: str, value: np.ndarray) -> str:
        """A canonical weight as an initializer under its canonical name."""
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attributes: Any) -> str:
        """One node with one output; returns the output's name."""
        out = self.name(hint or op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out


class _Emitter:
    """Writes the nodes of each layer, reading the weights by canonical name."""

    def __init__(self, graph: Graph, weights: Mapping[str, np.ndarray]) -> None:
        self.g, self.weights = graph, weights

    def w(self, name: str) -> str:
        return self.g.weight(name, self.weights[name])

    def linear(self, prefix: str, h: str, bias: bool = True) -> str:
        out = self.g.op("MatMul", [h, self.w(f"{prefix}weight")], f"{prefix}matmul")
        return self.g.op("Add", [out, self.w(f"{prefix}bias")], f"{prefix}bias") if bias else out

    def gelu(self, h: str, hint: str) -> str:
        if self.g.opset >= 20:
            return self.g.op("Gelu", [h], hint, approximate="tanh")
        g = self.g  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [h, h]), h])
        inner = g.op("Add", [h, g.op("Mul", [cube, g.const(0.044715)])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(math.sqrt(2.0 / math.pi))])])
        return g.op("Mul", [g.op("Mul", [h, g.const(0.5)]), g.op("Add", [t, g.const(1.0)])], hint)

    def layernorm(self, prefix: str, h: str, eps: float) -> str:
        scale, bias = self.w(f"{prefix}weight"), self.w(f"{prefix}bias")
        if self.g.opset >= 17:
            return self.g.op("LayerNormalization", [h, scale, bias], f"{prefix}layernorm", axis=-1, epsilon=eps)
        g = self.g  # opsets 13-16: ReduceMean takes its axes as an attribute
        centred = g.op("Sub", [h, g.op("ReduceMean", [h], axes=[-1])])
        var = g.op("ReduceMean", [g.op("Mul", [centred, centred])], axes=[-1])
        normed = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, g.const(eps)])])])
        return g.op("Add", [g.op("Mul", [normed, scale]), bias], f"{prefix}layernorm")

    def attention(self, prefix: str, h: str, shape: S.Shape, heads: int, causal: bool) -> str:
        g = self.g
        t, d = shape
        split = g.const([0, t, heads, d // heads], "heads", np.int64)
        q, k, v = (g.op("Reshape", [self.linear(f"{prefix}{n}.", h), split]) for n in "qkv")
        q = g.op("Transpose", [q], perm=[0, 2, 1, 3])  # (batch, heads, T, d_head)
        k = g.op("Transpose", [k], perm=[0, 2, 3, 1])  # (batch, heads, d_head, T)
        v = g.op("Transpose", [v], perm=[0, 2, 1, 3])
        scores = g.op("Mul", [g.op("MatMul", [q, k]), g.const(1.0 / math.sqrt(d // heads))])
        if causal:  # -inf above the diagonal: a position sees itself and the ones before
            mask = np.where(np.triu(np.ones((t, t), bool), 1), -np.inf, 0.0)
            scores = g.op("Add", [scores, g.const(mask, "causal_mask")], f"{prefix}causal")
        mixed = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        merged = g.op("Reshape", [g.op("Transpose", [mixed], perm=[0, 2, 1, 3]), g.const([0, t, d], "merge", np.int64)])
        return self.linear(f"{prefix}o.", merged)

    def merge(self, p: str, layer: S.Layer, inputs: list[str], shape: S.Shape) -> str | None:
        """A merge node's output (``add``: ``Add``, or ``Sum`` of 3+; ``concat`` on the channel
        axis), or None for a layer that is no merge this exporter knows."""
        if isinstance(layer, S.Add):
            return self.g.op("Add" if len(inputs) == 2 else "Sum", inputs, f"{p}add")
        if isinstance(layer, S.Concat):
            return self.g.op("Concat", inputs, f"{p}concat", axis=S.channel_axis(shape) + 1)
        return None

    def global_avg_pool(self, p: str, h: str, shape: S.Shape) -> str:
        g = self.g
        if len(shape) == 3:  # (batch, C, H, W) -> (batch, C, 1, 1) -> (batch, C)
            return g.op("Flatten", [g.op("GlobalAveragePool", [h])], f"{p}global_avg_pool", axis=1)
        if g.opset >= 18:  # ReduceMean takes its axes as an input from opset 18
            return g.op("ReduceMean", [h, g.const([1], "axes", np.int64)], f"{p}global_avg_pool", keepdims=0)
        return g.op("ReduceMean", [h], f"{p}global_avg_pool", axes=[1], keepdims=0)

    def node(self, spec: S.ModelSpec, i: int, values: Mapping[int, str]) -> str:
        """Node ``i``'s output value, reading its sources' ``values`` (``-1``: the input)."""
        layer, inputs = spec.layers[i], [values[j] for j in spec.sources[i]]
        if isinstance(layer, S.Op):
            return opnodes.write(self.g, spec, i, values, self.w)
        p, shape = f"{spec.node_names[i]}.", spec.input_shape_of(i)
        out = self.merge(p, layer, inputs, shape) if layer.merge else self.layer(p, layer, inputs[0], shape)
        if out is None:
            label = f"node '{spec.node_names[i]}'" if spec.is_graph else f"layer {i}"
            raise SpecError(f"{label} ({layer.type}): the ONNX exporter cannot express this layer type")
        return out

    def layer(self, p: str, layer: S.Layer, h: str, shape: S.Shape) -> str | None:
        """The output of a one-input layer whose weights are named ``{p}{param}``, or None for a
        layer type this exporter cannot express."""
        g = self.g
        kind = layer.type
        if isinstance(layer, S.Dense):
            return self.linear(p, h, layer.bias)
        if isinstance(layer, S.Conv2D):
            inputs = [h, self.w(f"{p}weight")] + ([self.w(f"{p}bias")] if layer.bias else [])
            k, s, pad = layer.kernel_size, layer.stride, layer.padding
            return g.op("Conv", inputs, f"{p}conv", kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)
        if isinstance(layer, (S.MaxPool2D, S.AvgPool2D)):
            op_type = "MaxPool" if isinstance(layer, S.MaxPool2D) else "AveragePool"
            k, s = layer.pool_size, layer.step
            return g.op(op_type, [h], f"{p}pool", kernel_shape=[k, k], strides=[s, s])
        if isinstance(layer, S.BatchNorm):  # inference: the running statistics
            names = [self.w(f"{p}{n}") for n in ("weight", "bias", "running_mean", "running_var")]
            return g.op("BatchNormalization", [h, *names], f"{p}batchnorm", epsilon=layer.eps)
        if isinstance(layer, S.LayerNorm):
            return self.layernorm(p, h, layer.eps)
        if isinstance(layer, S.Embedding):
            out = g.op("Gather", [self.w(f"{p}weight"), h], f"{p}embedding", axis=0)
            if layer.max_len:
                starts, ends, axes = (g.const([v], "slice", np.int64) for v in (0, shape[0], 0))
                first = g.op("Slice", [self.w(f"{p}position"), starts, ends, axes], f"{p}positions")
                out = g.op("Add", [out, first], f"{p}add_positions")
            return out
        if isinstance(layer, S.Attention):
            return self.attention(f"{p}", h, shape, layer.num_heads, layer.causal)
        if isinstance(layer, S.GlobalAvgPool):
            return self.global_avg_pool(p, h, shape)
        if isinstance(layer, S.TransformerBlock):
            x = g.op(
                "Add",
                [
                    h,
                    self.attention(
                        f"{p}attn.", self.layernorm(f"{p}ln1.", h, 1e-5), shape, layer.num_heads, layer.causal
                    ),
                ],
            )
            hidden = self.gelu(self.linear(f"{p}fc1.", self.layernorm(f"{p}ln2.", x, 1e-5)), f"{p}gelu")
            return g.op("Add", [x, self.linear(f"{p}fc2.", hidden)], f"{p}residual")
        simple: dict[str, Callable[[], str]] = {
            "flatten": lambda: g.op("Flatten", [h], f"{p}flatten", axis=1),
            "relu": lambda: g.op("Relu", [h], f"{p}relu"),
            "gelu": lambda: self.gelu(h, f"{p}gelu"),
            "tanh": lambda: g.op("Tanh", [h], f"{p}tanh"),
            "sigmoid": lambda: g.op("Sigmoid", [h], f"{p}sigmoid"),
            "softmax": lambda: g.op("Softmax", [h], f"{p}softmax", axis=-1),
            "dropout": lambda: g.op("Identity", [h], f"{p}dropout"),  # inference: identity
        }
        return simple[kind]() if kind in simple else None


def to_onnx(
    spec: S.ModelSpec,
    weights: Mapping[str, Any],
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """``spec`` with ``weights`` (canonical names and layout) as a checked ONNX model.

    The model passes ``onnx.checker.check_model(full_check=True)`` (which runs strict shape
    inference). Its ``metadata_props`` hold the spec as JSON (``sdk_core.spec``), the SDK
    version (``sdk_core.version``) and ``metadata``. A layer the exporter cannot express is
    a :class:`SpecError` naming it; weights that do not match the spec, or hold NaN or
    infinity, are refused.
    """
    onnx = require_onnx()
    opset = check_opset(opset)
    if not isinstance(spec, S.ModelSpec):
        raise SdkError(f"'spec' must be a ModelSpec (got {type(spec).__name__})")
    spec.check_weights(dict(weights), what="weights")
    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}
    check_finite(arrays, "weights", "; it is not exported")
    graph = Graph(opset)
    emit = _Emitter(graph, arrays)
    values = {-1: "x"}  # node index -> its output's value name
    for i in range(len(spec.layers)):
        values[i] = emit.node(spec, i, values)
    graph.nodes.append(onnx.helper.make_node("Identity", [values[len(spec.layers) - 1]], ["y"], name="output"))
    elem = onnx.TensorProto.INT64 if spec.input_dtype == "int64" else onnx.TensorProto.FLOAT
    x = onnx.helper.make_tensor_value_info("x", elem, ["batch", *spec.input_shape])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", *spec.output_shape])
    body = onnx.helper.make_graph(graph.nodes, spec.name or "model", [x], [y], graph.initializers)
    return finish(onnx, body, opset, spec, metadata)


def finish(onnx: Any, body: Any, opset: int, spec: S.ModelSpec, metadata: Mapping[str, str] | None) -> Any:
    """The model of graph ``body``: the opset, the oldest IR version that carries it, the spec
    and the SDK's version in its properties (with ``metadata``), checked in full."""
    model = onnx.helper.make_model(
        body,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="sdk_core",
        producer_version=__version__,
    )
    model.ir_version = min(model.ir_version, _ir_version(onnx, opset))
    props = {SPEC_KEY: spec.to_json(), VERSION_KEY: __version__, **(metadata or {})}
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


def _ir_version(onnx: Any, opset: int) -> int:
    """The oldest IR version that carries ``opset``: older runtimes read the file too."""
    table = getattr(onnx.helper, "VERSION_TABLE", [])
    versions = [ir for _, ir, ai, *_ in table if ai == opset]
    return min(versions) if versions else onnx.IR_VERSION


def spec_of(model: onnx.ModelProto) -> S.ModelSpec:
    """The ModelSpec stored in a model written by :func:`to_onnx`."""
    props = {p.key: p.value for p in model.metadata_props}
    if SPEC_KEY not in props:
        raise SdkError("the ONNX model holds no sdk_core spec (it was not written by sdk export)")
    return S.ModelSpec.from_json(props[SPEC_KEY])


def metadata_of(model: onnx.ModelProto) -> dict[str, Any]:
    """The model's ``metadata_props``, the spec parsed from JSON."""
    props: dict[str, Any] = {p.key: p.value for p in model.metadata_props}
    if SPEC_KEY in props:
        props[SPEC_KEY] = json.loads(props[SPEC_KEY])
    return props
