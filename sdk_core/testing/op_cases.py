"""Operator-node cases of the conformance kit: every operator of :data:`sdk_core.model.ops.OPS`
with broadcasting and attribute variants, and random operator graphs.

Each case multiplies the model's input by a trained weight first (node ``pre``), so that one
training step checks the gradient through the operator against the NumPy reference too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import spec as S

F, I = np.float32, np.int64


def c(value: Any, dtype: Any = F) -> S.Constant:
    return S.Constant(np.asarray(value, dtype))


def w(*shape: int, init: str = "glorot", trainable: bool = True) -> S.Weight:
    return S.Weight(shape, init=init, trainable=trainable)


def op(
    name: str, kind: str, *inputs: str, weights: dict | None = None, constants: dict | None = None, **attributes: Any
) -> S.Node:
    return S.Node(
        name, S.Op(kind, inputs=inputs, attributes=attributes, weights=weights or {}, constants=constants or {})
    )


def graph(shape: tuple[int, ...], *nodes: S.Node, dtype: str = "float32") -> S.ModelSpec:
    """``pre = input * g`` (g trained, the input's shape), then ``nodes``."""
    pre = op("pre", "Mul", "input", "g", weights={"g": w(*shape)}) if dtype == "float32" else None
    return S.ModelSpec.from_nodes(shape, ([pre] if pre else []) + list(nodes), input_dtype=dtype)


def unary(kind: str, shape: tuple[int, ...] = (3, 5), positive: bool = False, **attributes: Any) -> S.ModelSpec:
    """``kind`` of ``pre`` (made positive first for the operators defined there)."""
    if not positive:
        return graph(shape, op("y", kind, "pre", **attributes))
    return graph(
        shape,
        op("abs", "Abs", "pre"),
        op("pos", "Add", "abs", "half", constants={"half": c(0.5)}),
        op("y", kind, "pos", **attributes),
    )


def binary(kind: str) -> S.ModelSpec:
    """``kind`` of ``pre`` (B, 3, 5) with a trained (5,) weight, broadcast."""
    return graph((3, 5), op("y", kind, "pre", "b", weights={"b": w(5)}))


OP_SPECS: dict[str, S.ModelSpec] = {
    # products
    "op_matmul": graph((3, 5), op("y", "MatMul", "pre", "W", weights={"W": w(5, 4)})),
    "op_matmul_two_nodes": graph((3, 5), op("t", "Transpose", "pre", perm=[0, 2, 1]), op("y", "MatMul", "pre", "t")),
    "op_gemm": graph(
        (5,), op("y", "Gemm", "pre", "W", "C", weights={"W": w(4, 5), "C": w(4)}, alpha=0.5, beta=2.0, transB=1)
    ),
    # elementwise
    "op_add": binary("Add"),
    "op_sub": binary("Sub"),
    "op_mul": binary("Mul"),
    "op_div": graph(
        (3, 5),
        op("abs", "Abs", "pre"),
        op("den", "Add", "abs", "one", constants={"one": c([1.0])}),
        op("y", "Div", "input", "den"),
    ),
    "op_pow": graph(
        (3, 5),
        op("abs", "Abs", "pre"),
        op("pos", "Add", "abs", "half", constants={"half": c(0.5)}),
        op("y", "Pow", "pos", "e", constants={"e": c(1.5)}),
    ),
    "op_sqrt": unary("Sqrt", positive=True),
    "op_exp": unary("Exp"),
    "op_log": unary("Log", positive=True),
    "op_neg": unary("Neg"),
    "op_abs": unary("Abs"),
    "op_erf": unary("Erf"),
    "op_tanh": unary("Tanh"),
    "op_sigmoid": unary("Sigmoid"),
    "op_relu": unary("Relu"),
    "op_leaky_relu": unary("LeakyRelu", alpha=0.2),
    "op_clip": graph((3, 5), op("y", "Clip", "pre", "lo", "hi", constants={"lo": c(-0.3), "hi": c(0.4)})),
    "op_clip_max_only": graph((3, 5), op("y", "Clip", "pre", "", "hi", constants={"hi": c(0.2)})),
    "op_min_max": graph(
        (3, 5),
        op("t", "Tanh", "pre"),
        op("lo", "Min", "pre", "t", "b", weights={"b": w(5)}),
        op("y", "Max", "lo", "input"),
    ),
    "op_where_greater": graph(
        (3, 5),
        op("pos", "Greater", "pre", "zero", constants={"zero": c(0.0)}),
        op("neg", "Neg", "pre"),
        op("y", "Where", "pos", "pre", "neg"),
    ),
    "op_equal_cast": graph(
        (3, 5),
        op("pos", "Greater", "pre", "zero", constants={"zero": c(0.0)}),
        op("ints", "Cast", "pos", to=7),
        op("one", "Equal", "ints", "k", constants={"k": c(1, I)}),
        op("y", "Where", "one", "pre", "z", constants={"z": c(0.0)}),
    ),
    "op_less_not_and": graph(
        (3, 5),
        op("a", "Greater", "pre", "zero", constants={"zero": c(-0.2)}),
        op("b", "Less", "pre", "top", constants={"top": c(0.5)}),
        op("both", "And", "a", "b"),
        op("neither", "Not", "both"),
        op("twice", "Mul", "pre", "two", constants={"two": c(2.0)}),
        op("y", "Where", "neither", "pre", "twice"),
    ),
    "op_isnan": graph(
        (3, 5),
        op("nan", "IsNaN", "pre"),
        op("y", "Where", "nan", "z", "pre", constants={"z": c(0.0)}),
    ),
    "op_cast_round_trip": graph(
        (3, 5),
        op("scaled", "Mul", "pre", "ten", constants={"ten": c(10.0)}),
        op("ints", "Cast", "scaled", to=7),
        op("back", "Cast", "ints", to=1),
        op("y", "Add", "back", "pre"),
    ),
    # reductions and normalisation
    "op_reduce_mean": graph((3, 5), op("y", "ReduceMean", "pre", axes=[2])),
    "op_reduce_sum_axes_input": graph(
        (3, 5), op("y", "ReduceSum", "pre", "axes", constants={"axes": c([1], I)}, keepdims=0)
    ),
    "op_reduce_max": graph((3, 5), op("y", "ReduceMax", "pre", axes=[-1], keepdims=0)),
    "op_softmax": graph((3, 5), op("y", "Softmax", "pre")),
    "op_softmax_axis1": graph((3, 5), op("y", "Softmax", "pre", axis=1)),
    "op_log_softmax": graph((3, 5), op("y", "LogSoftmax", "pre")),
    "op_layer_norm": graph(
        (3, 5),
        op("y", "LayerNormalization", "pre", "s", "b", weights={"s": w(5, init="ones"), "b": w(5, init="zeros")}),
    ),
    "op_layer_norm_two_axes": graph(
        (3, 5), op("y", "LayerNormalization", "pre", "s", weights={"s": w(3, 5, init="ones")}, axis=1, epsilon=1e-3)
    ),
    "op_batch_norm": graph(
        (4, 3, 3),
        op(
            "y",
            "BatchNormalization",
            "pre",
            "s",
            "b",
            "running_mean",
            "running_var",
            weights={
                "s": w(4, init="ones"),
                "b": w(4, init="zeros"),
                "running_mean": w(4, init="zeros", trainable=False),
                "running_var": w(4, init="ones", trainable=False),
            },
        ),
    ),
    # shape
    "op_reshape": graph((3, 5), op("y", "Reshape", "pre", "to", constants={"to": c([0, 5, 3], I)})),
    "op_reshape_minus_one": graph((3, 5), op("y", "Reshape", "pre", "to", constants={"to": c([-1, 15], I)})),
    "op_transpose": graph((3, 5), op("y", "Transpose", "pre", perm=[0, 2, 1])),
    "op_flatten": graph((2, 3, 2), op("y", "Flatten", "pre")),
    "op_squeeze_unsqueeze": graph(
        (1, 5),
        op("s", "Squeeze", "pre", "ax", constants={"ax": c([1], I)}),
        op("y", "Unsqueeze", "s", "ax2", constants={"ax2": c([1, 3], I)}),
    ),
    "op_concat": graph((3, 5), op("t", "Tanh", "pre"), op("y", "Concat", "pre", "t", "input", axis=-1)),
    "op_split": graph((3, 5), op("y", "Split", "pre", "sizes", constants={"sizes": c([2, 3], I)}, axis=2, output=1)),
    "op_split_equal": graph((4, 3), op("y", "Split", "pre", axis=1, num_outputs=2, output=0)),
    "op_slice": graph(
        (4, 5),
        op("y", "Slice", "pre", "st", "en", "ax", constants={"st": c([1], I), "en": c([3], I), "ax": c([2], I)}),
    ),
    "op_slice_reversed_steps": graph(
        (4, 5),
        op(
            "y",
            "Slice",
            "pre",
            "st",
            "en",
            "ax",
            "sp",
            constants={"st": c([-1, 0], I), "en": c([-100, 5], I), "ax": c([1, 2], I), "sp": c([-1, 2], I)},
        ),
    ),
    "op_gather_rows": graph((3, 5), op("y", "Gather", "pre", "idx", constants={"idx": c([4, 0, -1], I)}, axis=2)),
    "op_gather_embedding": graph(
        (4,),
        op("emb", "Gather", "table", "input", weights={"table": w(9, 5, init="normal")}),
        op("y", "Tanh", "emb"),
        dtype="int64",
    ),
    # two nodes on weights alone (no batch axis), as in an imported language model: the holder
    # of a tied table, and a stored position table's rows picked by constants (the length known)
    "op_two_nodes_on_weights": graph(
        (4, 5),
        op("tied", "Identity", "out", weights={"out": w(5, 3)}),
        op("pos", "Gather", "table", "i", weights={"table": w(6, 5, init="normal")}, constants={"i": c(range(4), I)}),
        op("h", "Add", "pre", "pos"),
        op("y", "MatMul", "h", "tied"),
    ),
    "op_gather_elements": graph(
        (3, 5),
        op("pos", "Greater", "pre", "zero", constants={"zero": c(0.0)}),
        op("idx", "Cast", "pos", to=7),
        op("y", "GatherElements", "pre", "idx", axis=2),
    ),
    "op_expand": graph((1, 5), op("y", "Expand", "pre", "to", constants={"to": c([1, 3, 5], I)})),
    "op_identity_dropout": graph(
        (3, 5), op("i", "Identity", "pre"), op("y", "Dropout", "i", "ratio", constants={"ratio": c(0.3)})
    ),
    # spatial
    "op_conv": graph(
        (2, 6, 6),
        op("y", "Conv", "pre", "W", "B", weights={"W": w(4, 2, 3, 3), "B": w(4)}, pads=[1, 1, 1, 1], strides=[2, 2]),
    ),
    "op_conv_grouped_dilated": graph(
        (2, 7, 7), op("y", "Conv", "pre", "W", weights={"W": w(4, 1, 3, 3)}, group=2, dilations=[2, 2])
    ),
    "op_conv_depthwise_same": graph(
        (3, 6, 5),
        op("y", "Conv", "pre", "W", weights={"W": w(3, 1, 3, 3)}, group=3, auto_pad="SAME_UPPER", strides=[2, 2]),
    ),
    "op_max_pool": graph((2, 6, 6), op("y", "MaxPool", "pre", kernel_shape=[2, 2], strides=[2, 2])),
    "op_max_pool_ceil_padded": graph(
        (2, 6, 6), op("y", "MaxPool", "pre", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    ),
    "op_max_pool_dilated": graph((2, 7, 7), op("y", "MaxPool", "pre", kernel_shape=[2, 2], dilations=[2, 2])),
    "op_average_pool": graph(
        (2, 5, 5), op("y", "AveragePool", "pre", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    ),
    "op_average_pool_with_pads": graph(
        (2, 5, 5),
        op("y", "AveragePool", "pre", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    ),
    "op_average_pool_ceil": graph(
        (2, 6, 6), op("y", "AveragePool", "pre", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    ),
    "op_global_average_pool": graph((3, 4, 5), op("y", "GlobalAveragePool", "pre")),
    "op_pad_constant": graph(
        (2, 3, 4),
        op("y", "Pad", "pre", "p", "v", constants={"p": c([0, 0, 1, 2, 0, 0, 2, 1], I), "v": c(0.5)}),
    ),
    "op_pad_reflect": graph(
        (2, 4, 4), op("y", "Pad", "pre", "p", constants={"p": c([0, 0, 1, 2, 0, 0, 2, 1], I)}, mode="reflect")
    ),
    "op_pad_edge_axes": graph(
        (2, 4, 4),
        op("y", "Pad", "pre", "p", "", "ax", constants={"p": c([2, 1, 1, 2], I), "ax": c([2, -1], I)}, mode="edge"),
    ),
    # shape-only subgraphs, folded by the core
    "op_folded_shapes": graph(
        (3, 5),
        op("shape", "Shape", "pre"),
        op("batch", "Slice", "shape", "st", "en", constants={"st": c([0], I), "en": c([1], I)}),
        op("target", "Concat", "batch", "rest", constants={"rest": c([15], I)}, axis=0),
        op("flat", "Reshape", "pre", "target"),
        op("tail", "Shape", "pre", start=1),
        op("ones", "ConstantOfShape", "tail", value=1.0),
        op("n", "Range", "zero", "five", "one", constants={"zero": c(0.0), "five": c(5.0), "one": c(1.0)}),
        op("row", "Add", "pre", "ones"),
        op("rowsn", "Mul", "row", "n"),
        op("flat2", "Reshape", "rowsn", "target"),
        op("y", "Add", "flat", "flat2"),
    ),
}


def random_op_graph(draw: Any) -> S.ModelSpec:
    """A random graph of operator nodes for hypothesis' ``draw`` (``st.data().draw``):
    consistent shapes, several merges, every node used; shapes ``(B, T, D)``."""
    import hypothesis.strategies as st

    t, d = draw(st.integers(2, 4)), draw(st.integers(2, 5))
    nodes = [op("pre", "Mul", "input", "g", weights={"g": w(t, d)})]
    shapes: dict[str, tuple[int, int]] = {"pre": (t, d)}
    unread = {"pre"}

    def add(node: S.Node, shape: tuple[int, int], reads: list[str]) -> None:
        nodes.append(node)
        shapes[node.name] = shape
        unread.difference_update(reads)
        unread.add(node.name)

    for k in range(draw(st.integers(3, 8))):
        name = f"n{k}"
        src = draw(st.sampled_from(sorted(shapes)))
        shape = shapes[src]
        same = sorted(n for n in shapes if n != src and shapes[n] == shape)
        kind = draw(st.sampled_from(["unary", "binary", "matmul", "norm", "softmax", "concat", "transpose", "reduce"]))
        if kind == "binary" and same:
            other = draw(st.sampled_from(same))
            add(op(name, draw(st.sampled_from(["Add", "Sub", "Mul", "Max", "Min"])), src, other), shape, [src, other])
        elif kind == "matmul":
            width = draw(st.integers(2, 5))
            add(op(name, "MatMul", src, "W", weights={"W": w(shape[1], width)}), (shape[0], width), [src])
        elif kind == "norm":
            add(op(name, "LayerNormalization", src, "s", weights={"s": w(shape[1], init="ones")}), shape, [src])
        elif kind == "softmax":
            add(op(name, "Softmax", src, axis=draw(st.sampled_from([1, 2, -1]))), shape, [src])
        elif kind == "concat" and same:
            other = draw(st.sampled_from(same))
            add(op(name, "Concat", src, other, axis=-1), (shape[0], shape[1] * 2), [src, other])
        elif kind == "transpose" and shape[0] == shape[1]:
            add(op(name, "Transpose", src, perm=[0, 2, 1]), shape, [src])
        elif kind == "reduce":
            add(op(name, "ReduceMean", src, axes=[2]), (shape[0], 1), [src])
        else:
            act = draw(st.sampled_from(["Tanh", "Sigmoid", "Relu", "Abs", "Neg", "Erf", "LeakyRelu"]))
            add(op(name, act, src), shape, [src])
    # one output: every unread node reduced to (T, 1) and summed
    heads = []
    for n in sorted(unread):
        heads.append(f"h_{n}")
        nodes.append(op(f"h_{n}", "ReduceSum", n, "ax", constants={"ax": c([2], I)}))
    if len(heads) > 1:
        nodes.append(op("out", "Add", heads[0], heads[1]))
        for i, h in enumerate(heads[2:]):
            nodes.append(op(f"out{i}", "Add", nodes[-1].name, h))
    return S.ModelSpec.from_nodes((t, d), nodes)
