"""Operator nodes in the spec: construction, shape and dtype inference, folding with a free
batch, JSON round trips, and one-line errors naming the node, the operator and the shapes."""

from __future__ import annotations

import numpy as np
import pytest

from sdk_core import Constant, ModelSpec, Node, Op, SpecError, Stack, Weight
from sdk_core.model.ops import FOLDED, OPS
from sdk_core.testing.op_cases import OP_SPECS


def op(name, kind, *inputs, weights=None, constants=None, **attributes):
    return Node(name, Op(kind, inputs=inputs, attributes=attributes, weights=weights or {}, constants=constants or {}))


def spec_of(shape, *nodes, dtype="float32"):
    return ModelSpec.from_nodes(shape, nodes, input_dtype=dtype)


def test_the_operator_table_has_every_listed_operator():
    listed = [
        "MatMul",
        "Gemm",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Exp",
        "Log",
        "Neg",
        "Abs",
        "Erf",
        "Tanh",
        "Sigmoid",
        "Relu",
        "LeakyRelu",
        "Clip",
        "Min",
        "Max",
        "Where",
        "Equal",
        "Less",
        "Greater",
        "Not",
        "And",
        "Cast",
        "IsNaN",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "Softmax",
        "LogSoftmax",
        "LayerNormalization",
        "BatchNormalization",
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "GatherElements",
        "Expand",
        "Identity",
        "Dropout",
        "Conv",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Pad",
        "Shape",
        "Range",
        "ConstantOfShape",
    ]
    assert set(listed) <= set(OPS) and set(OPS) - set(listed) <= set(FOLDED)  # and what exporters fold
    covered = {p.op for s in OP_SPECS.values() for p in s.plans if p is not None}
    assert covered == set(OPS) - set(FOLDED), "every operator a framework runs has a kit case"


@pytest.mark.parametrize("name", sorted(OP_SPECS))
def test_every_case_round_trips_through_json(name):
    spec = OP_SPECS[name]
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec and again.shapes == spec.shapes and again.dtypes == spec.dtypes
    assert [p.name for p in again.layout()] == [p.name for p in spec.layout()]


def test_shapes_dtypes_and_weights_are_inferred():
    spec = spec_of(
        (3, 5),
        op("mm", "MatMul", "input", "w", weights={"w": Weight((5, 4))}),
        op("gt", "Greater", "mm", "z", constants={"z": Constant(np.float32(0))}),
        op("y", "Where", "gt", "mm", "z", constants={"z": Constant(np.float32(0))}),
    )
    assert spec.shapes[1:] == ((3, 4), (3, 4), (3, 4))
    assert spec.dtypes[1:3] == ("float", "bool")
    assert [(p.name, p.shape, p.fan) for p in spec.layout()] == [("mm.w", (5, 4), (5, 4))]


def test_where_broadcasts_its_three_inputs():
    spec = spec_of(
        (3, 5),
        op("gt", "Greater", "input", "z", constants={"z": Constant(np.float32(0))}),
        op("y", "Where", "gt", "input", "b", weights={"b": Weight((5,))}),
    )
    assert spec.shapes[-1] == (3, 5)


ZERO = {"z": Constant(np.float32(0))}
IMPOSSIBLE = {
    "inner sizes": (
        lambda: [op("mm", "MatMul", "input", "w", weights={"w": Weight((7, 4))})],
        r"node 'mm' \(op MatMul\): MatMul of \(batch, 3, 5\) and \(7, 4\): inner sizes 5 and 7 differ",
    ),
    "reduce the batch": (
        lambda: [op("m", "ReduceMean", "input", axes=[0])],
        r"node 'm' \(op ReduceMean\): 'axes' 0 is the batch axis",
    ),
    "move the batch": (
        lambda: [op("t", "Transpose", "input", perm=[1, 0, 2])],
        r"node 't' \(op Transpose\): 'perm' \[1, 0, 2\] moves the batch",
    ),
    "broadcast": (
        lambda: [op("a", "Add", "input", "b", weights={"b": Weight((4,))})],
        r"node 'a' \(op Add\): shapes \(batch, 3, 5\), \(4\) do not broadcast",
    ),
    "merge the batch": (
        lambda: [op("f", "Flatten", "input", axis=2)],
        r"node 'f' \(op Flatten\): 'axis' 2 would merge the batch axis",
    ),
    "reshape the batch": (
        lambda: [op("r", "Reshape", "input", "s", constants={"s": Constant(np.array([2, -1]))})],
        r"node 'r' \(op Reshape\): .*the batch axis must stay first",
    ),
    "axis out of range": (lambda: [op("s", "Softmax", "input", axis=5)], r"'axis' 5 is out of range for rank 3"),
    "unknown input": (lambda: [op("c", "Clip", "input", "lo")], r"node 'c': input 'lo' is no node"),
    "not float at the end": (
        lambda: [op("g", "Greater", "input", "z", constants=ZERO)],
        r"the last node's output must be a float tensor \(got bool\)",
    ),
    "squeeze a real axis": (
        lambda: [op("sq", "Squeeze", "input", "ax", constants={"ax": Constant(np.array([1]))})],
        r"node 'sq' \(op Squeeze\): Squeeze of axis 1 of \(batch, 3, 5\): its size is not 1",
    ),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_an_impossible_graph_is_one_line_naming_node_operator_and_shapes(case):
    nodes, message = IMPOSSIBLE[case]
    with pytest.raises(SpecError, match=message) as error:
        spec_of((3, 5), *nodes())
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Op("Relu", inputs=["x"], attributes={"bogus": 1}),
            r"Relu has no attribute 'bogus' \(attributes: none\)",
        ),
        (lambda: Op("Frobnicate"), r"unknown operator 'Frobnicate'"),
        (lambda: Op("MatMul", inputs=["x"]), r"MatMul takes 2 inputs \(got 1\)"),
        (
            lambda: Op("Add", inputs=["x", "w"], weights={"v": Weight((2,))}),
            r"stored tensor 'v' is not among the inputs",
        ),
        (
            lambda: Op("Add", inputs=["x", "w"], weights={"w": Weight((2,))}, constants={"w": [1]}),
            "both a weight and a constant",
        ),
    ],
)
def test_a_malformed_operator_node_is_refused_when_made(make, message):
    with pytest.raises(SpecError, match=message):
        make()


def test_a_static_input_must_be_a_constant():
    with pytest.raises(SpecError, match=r"node 'r' \(op Reshape\): input 1 \('w'\) must be a stored constant"):
        spec_of((3, 5), op("r", "Reshape", "input", "w", weights={"w": Weight((2,))}))


def test_integer_tensors_are_constants_and_weights_are_float():
    with pytest.raises(SpecError, match="'shape' must be a list of positive ints"):
        Weight((0, 3))
    with pytest.raises(SpecError, match="must hold floats, ints or bools"):
        Constant(np.array(["a"]))
    assert Constant([1, 2]).array.dtype == np.int64 and Constant([1.5]).array.dtype == np.float32


def test_shape_subgraphs_fold_and_keep_the_batch_free():
    spec = OP_SPECS["op_folded_shapes"]
    folded = [spec.node_names[i] for i, p in enumerate(spec.plans) if p is None]
    assert folded == ["shape", "batch", "target", "tail", "ones", "n"]
    reshape = spec.plans[spec.node_names.index("flat")]
    assert reshape.args[1][0] == "const" and reshape.args[1][1].tolist() == [0, 15]  # 0: the batch, copied
    ones = spec.plans[spec.node_names.index("row")].args[1][1]
    assert ones.shape == (3, 5) and (ones == 1).all()


@pytest.mark.needs_framework("numpy")
def test_a_reshape_with_allowzero_keeps_the_folded_batch_free():
    """The dynamo exporter writes ``Reshape(x, Concat(Shape(x)[0:1], Shape(x)[1:2], ...),
    allowzero=1)`` where it leaves an axis free: the folded batch entry is the one 0 of the
    target, so the reshape copies the batch size as a 0 does without allowzero."""
    spec = spec_of(
        (4, 6),
        op("batch", "Shape", "input", end=1),
        op("length", "Shape", "input", start=1, end=2),
        op("target", "Concat", "batch", "length", "split", constants={"split": np.array([2, 3])}, axis=0),
        op("y", "Reshape", "input", "target", allowzero=1),
    )
    assert spec.output_shape == (4, 2, 3)
    plan = spec.plans[spec.node_names.index("y")]
    assert plan.args[1][1].tolist() == [0, 4, 2, 3] and plan.attributes["allowzero"] == 0
    x = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    np.testing.assert_array_equal(Stack("numpy").build(spec).predict(x), x.reshape(2, 4, 2, 3))


def test_a_value_that_depends_on_the_batch_elsewhere_is_refused():
    with pytest.raises(SpecError, match="depends on the batch size"):
        spec_of(
            (3, 5),
            op("shape", "Shape", "input"),
            op("f", "Cast", "shape", to=1),
            op("y", "Add", "input", "f"),
        )


def test_json_names_op_inputs_once_and_reads_them_back():
    spec = OP_SPECS["op_gemm"]
    data = spec.to_dict()
    node = data["layers"][1]
    assert node["type"] == "op" and node["inputs"] == ["pre", "W", "C"]  # the operator's inputs, written once
    assert node["attributes"] == {"alpha": 0.5, "beta": 2.0, "transB": 1}
    assert ModelSpec.from_dict(data) == spec


def test_a_sequential_spec_can_end_in_operators():
    from sdk_core import Dense

    spec = ModelSpec((4,), [Dense(6), Op("Tanh"), Op("Softmax")])
    assert spec.shapes == ((4,), (6,), (6,), (6,)) and not spec.is_graph


def test_positions_and_masks_that_exporters_compute_from_shapes_fold():
    """transformers' exports compute position ids as ``cumsum(ones) - 1`` and masks with
    GatherND and comparisons, all from the input's shape: the core folds them to constants."""
    i64 = lambda v: Constant(np.asarray(v, np.int64))
    spec = spec_of(
        (5,),
        op("shape", "Shape", "input"),
        op("ones", "ConstantOfShape", "shape", value=1),
        op("count", "CumSum", "ones", "axis", constants={"axis": i64(1)}),
        op("pos", "Sub", "count", "one", constants={"one": i64(1)}),
        op("first", "GatherND", "pos", "at", constants={"at": i64([[0]])}),
        op("low", "LessOrEqual", "first", "two", constants={"two": i64(2)}),
        op("keep", "Or", "low", "low"),
        op("cond", "Unsqueeze", "keep", "axes", constants={"axes": i64([2])}),
        op("emb", "Gather", "table", "input", weights={"table": Weight((7, 3))}),
        op("masked", "Where", "cond", "emb", "zero", constants={"zero": Constant(np.zeros((1, 1), np.float32))}),
        dtype="int64",
    )
    assert [p is None for p in spec.plans] == [True] * 8 + [False, False]
    cond = spec.plans[-1].args[0][1]
    np.testing.assert_array_equal(cond.reshape(-1), [True, True, True, False, False])
