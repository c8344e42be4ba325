"""Free input axes (ModelSpec.free_axes): a spec planned for one sequence length runs, trains
and serves at others with the same weights, in every framework; axes that are not free, and
graphs whose weights depend on the length, are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from sdk_core import Constant, ModelSpec, Node, Op, Optimizer, PluginManager, SdkError, SpecError, Stack, Weight

FRAMEWORKS = sorted(n for n, f in PluginManager().frameworks().items() if f.installed and f.trains)
VOCAB, D, T = 11, 8, 6


def op(name, kind, *inputs, weights=None, constants=None, **attributes):
    return Node(name, Op(kind, inputs=inputs, attributes=attributes, weights=weights or {}, constants=constants or {}))


def i64(*values) -> Constant:
    return Constant(np.array(values, np.int64))


def tiny_lm(free=(0,), length=T) -> ModelSpec:
    """Token and position tables (positions gathered by the input's length, as exporters
    write it), a causal mean over the positions made from the length too, and a projection."""
    nodes = [
        op("tok", "Gather", "table", "input", weights={"table": Weight((VOCAB, D), init="normal")}),
        op("shape", "Shape", "input"),
        op("length", "Gather", "shape", "one", constants={"one": i64(1)}),
        op("positions", "Range", "zero", "length", "step", constants={"zero": i64(0), "step": i64(1)}),
        op("pos", "Gather", "table", "positions", weights={"table": Weight((16, D), init="normal")}),
        op("h", "Add", "tok", "pos"),
        # a causal mean from the length: row t averages positions <= t (a folded (T, T) constant)
        op("row", "Unsqueeze", "positions", "ax1", constants={"ax1": i64(1)}),
        op("row_plus", "Add", "row", "one", constants={"one": i64(1)}),
        op("seen", "Less", "positions", "row_plus"),
        op("seen_f", "Cast", "seen", to=1),
        op("count", "ReduceSum", "seen_f", "last", constants={"last": i64(-1)}, keepdims=1),
        op("mean", "Div", "seen_f", "count"),
        op("mix", "MatMul", "mean", "h"),
        op("out", "MatMul", "mix", "w", weights={"w": Weight((D, VOCAB))}),
    ]
    return ModelSpec.from_nodes((length,), nodes, input_dtype="int64", free_axes=free)


class Batches:
    """An iterable of (x, y) batches, iterated afresh each epoch."""

    def __init__(self, items) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)


def ids(n: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (n, length)).astype(np.int64)


def reference(spec: ModelSpec, weights, x) -> np.ndarray:
    """The NumPy plugin's output for ``x``, from a spec built at ``x``'s length."""
    stack = Stack("numpy").build(spec.at(x.shape[1:]))
    stack.set_weights(weights)
    return stack.predict(x)


def test_the_spec_plans_at_another_length_with_the_same_weights():
    spec = tiny_lm()
    other = spec.at((9,))
    assert other.input_shape == (9,) and other.free_axes == (0,)
    assert {p.name: p.shape for p in other.layout()} == {p.name: p.shape for p in spec.layout()}
    assert other.output_shape == (9, VOCAB)
    assert ModelSpec.from_json(spec.to_json()) == spec and ModelSpec.from_json(spec.to_json()).free_axes == (0,)
    assert "free_axes" not in tiny_lm(free=()).to_dict()  # specs without free axes are written as before


def test_fixed_axes_and_lengths_the_graph_cannot_take_are_refused_in_one_line():
    with pytest.raises(SpecError, match=r"needs \(batch, 6\)"):
        tiny_lm(free=()).at((9,))
    with pytest.raises(SpecError, match=r"input has shape \(2, 7\), the model needs \(batch, 6\)"):
        tiny_lm(free=()).check_input(ids(2, 7))
    with pytest.raises(SpecError, match=r"does not run at input shape \(17,\).*index 16 is out of bounds"):
        tiny_lm().at((17,))  # past the 16 positions of the table
    with pytest.raises(SpecError, match=r"needs \(batch, any\)"):
        tiny_lm().check_input(ids(2, 0))
    with pytest.raises(SpecError, match=r"'free_axes' \[1\] must index the input's axes 0\.\.0"):
        tiny_lm(free=(1,))
    # a weight over the length: its shape would change, so the axis is not free
    fixed = ModelSpec.from_nodes(
        (T,),
        [
            op("x", "Gather", "t", "input", weights={"t": Weight((VOCAB, D))}),
            op("y", "Add", "x", "p", weights={"p": Weight((T, D))}),
        ],
        input_dtype="int64",
        free_axes=(0,),
    )
    with pytest.raises(SpecError, match=r"does not run at input shape \(9,\)"):
        fixed.at((9,))


@pytest.mark.needs_framework("numpy")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_framework_predicts_and_trains_at_other_lengths(framework, tmp_path):
    spec = tiny_lm()
    stack = Stack(framework).build(spec, seed=1)
    weights = stack.get_weights()
    for length in (T, 3, 11):
        x = ids(4, length, seed=length)
        np.testing.assert_allclose(stack.predict(x), reference(spec, weights, x), rtol=1e-5, atol=1e-6)
    assert stack.spec.input_shape == (T,)  # predicting elsewhere leaves the model at its length
    # training at another length: the model moves there, keeping its weights
    x = ids(16, 9, seed=3)
    y = np.roll(x, -1, axis=1)
    history = stack.fit(x, y, epochs=3, batch_size=8, optimizer=Optimizer("adam", lr=0.05), shuffle=False)
    assert stack.spec.input_shape == (9,) and history.loss[-1] < history.loss[0]
    path = str(tmp_path / "m.safetensors")
    stack.save(path)
    served = Stack("numpy").load(path)
    assert served.spec.free_axes == (0,)
    x = ids(2, 5, seed=4)
    np.testing.assert_allclose(served.predict(x), stack.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.needs_framework("numpy")
def test_moving_a_model_keeps_its_optimizer_state_and_iterable_batches_share_a_length():
    stack = Stack("numpy").build(tiny_lm(), seed=2)
    rule = Optimizer("adam", lr=0.01)
    x = ids(8, T, seed=5)
    stack.fit(x, np.roll(x, -1, axis=1), epochs=1, batch_size=8, optimizer=rule)
    before = stack.optimizer_state("cross_entropy", rule)
    stack.at((4,))
    after = stack.optimizer_state("cross_entropy", rule)
    assert after.step == before.step and after.step > 0
    for name, slots in before.slots.items():
        for slot, value in slots.items():
            np.testing.assert_array_equal(after.slots[name][slot], value)
    batches = Batches([(ids(4, 4, seed=6), ids(4, 4, seed=7)), (ids(4, 5, seed=8), ids(4, 5, seed=9))])
    with pytest.raises(SdkError, match=r"a batch has input shape \(5,\), the model trains at \(4,\)"):
        stack.fit(batches, epochs=1, optimizer=rule)


@pytest.mark.needs_framework("numpy")
def test_the_import_keeps_a_free_axis_fixed_where_the_graph_bakes_its_length(tmp_path):
    """An ONNX file whose length axis is free but whose Reshape holds a literal size: the
    import plans it for the given length, keeps the axis fixed, and a note says why."""
    onnx = pytest.importorskip("onnx", reason="sdk import needs onnx")
    from onnx import TensorProto, helper, numpy_helper

    from sdk_core import SdkWarning
    from sdk_core.model import onnx_import

    def write(target: list[int], name: str, out: list) -> str:
        graph = helper.make_graph(
            [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
            [
                numpy_helper.from_array(np.array(target, np.int64), "shape"),
                numpy_helper.from_array(np.ones((target[-1], 3), np.float32), "w"),
            ],
        )
        path = str(tmp_path / name)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    with pytest.warns(SdkWarning, match="input axis 1 is free in the file but stays 2 here"):
        baked = onnx_import.read(write([0, 8], "baked.onnx", ["batch", 3]), input_shape=(1, 2, 4))
    assert baked.spec.free_axes == () and baked.spec.input_shape == (2, 4)
    free = onnx_import.read(
        write([0, 0, 4], "free.onnx", ["batch", "length", 3]), input_shape=(1, 2, 4)
    )  # keeps the length: free
    assert free.spec.free_axes == (0,)
    stack = Stack("numpy").build(free.spec)
    stack.set_weights(free.weights)
    assert stack.predict(np.ones((1, 7, 4), np.float32)).shape == (1, 7, 3)
