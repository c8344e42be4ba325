"""Operator nodes in TensorFlow on the paths the kit's cases do not reach: grouped
convolution that is not depthwise, strides with dilations, 1-D windows, reflect padding wider
than the axis, negative indices read from the input, operator nodes in a sequential spec beside
channels-last layers, float64. Each equals the NumPy reference, forward and one sgd step."""

import numpy as np
import pytest

from sdk_core import Optimizer, Stack
from sdk_core.model import spec as S
from sdk_core.testing.cases import random_weights
from sdk_core.testing.op_cases import c, graph, op, w

I = np.int64

SPECS = {
    "conv_groups_strided_dilated_asymmetric": graph(
        (4, 9, 8),
        op(
            "y",
            "Conv",
            "pre",
            "W",
            "B",
            weights={"W": w(6, 2, 2, 3), "B": w(6)},
            group=2,
            strides=[2, 2],
            dilations=[2, 1],
            pads=[1, 0, 0, 2],
        ),
    ),
    "depthwise_multiplier_strided_dilated": graph(
        (2, 8, 8), op("y", "Conv", "pre", "W", weights={"W": w(4, 1, 3, 3)}, group=2, strides=[2, 2], dilations=[2, 2])
    ),
    "conv_1d_and_pools_1d": graph(
        (3, 9),
        op("c", "Conv", "pre", "W", weights={"W": w(4, 3, 3)}, pads=[2, 1]),
        op("m", "MaxPool", "c", kernel_shape=[2], strides=[2], dilations=[2]),
        op("y", "AveragePool", "m", kernel_shape=[3], pads=[1, 0]),
    ),
    "max_pool_strided_dilated": graph(
        (2, 9, 9), op("y", "MaxPool", "pre", kernel_shape=[2, 3], strides=[2, 2], dilations=[2, 2])
    ),
    "pad_reflect_wider_than_axis": graph(
        (2, 3), op("y", "Pad", "pre", "p", constants={"p": c([0, 0, 5, 0, 0, 4], I)}, mode="reflect")
    ),
    "gemm_broadcast_bias": graph((5,), op("y", "Gemm", "pre", "W", "C", weights={"W": w(5, 4), "C": w(1)}, alpha=0.7)),
    "gather_elements_negative": graph(
        (3, 4),
        op("pos", "Greater", "pre", "zero", constants={"zero": c(0.0)}),
        op("idx", "Where", "pos", "last", "first", constants={"last": c(-1, I), "first": c(-4, I)}),
        op("y", "GatherElements", "pre", "idx", axis=2),
    ),
}


def _negative_indices() -> S.ModelSpec:
    """An embedding whose ids, read from the input, are negative: they count from the end."""
    neg = op("neg", "Gather", "ids", "input", constants={"ids": c(np.arange(-9, 0), I)})
    return S.ModelSpec.from_nodes(
        (4,),
        [neg, op("emb", "Gather", "table", "neg", weights={"table": w(9, 3, init="normal")}, axis=0)],
        input_dtype="int64",
    )


def _sequential() -> S.ModelSpec:
    """Operator nodes between the conv layers (which run channels-last) of a sequential spec."""
    return S.ModelSpec(
        input_shape=(2, 6, 6),
        layers=[
            S.Conv2D(3, 3, padding=1),
            S.Op("Relu"),
            S.Op("MaxPool", attributes={"kernel_shape": [2, 2], "strides": [2, 2]}),
            S.Conv2D(2, 1),
            S.Op("ReduceMean", attributes={"axes": [2, 3], "keepdims": 0}),
        ],
    )


def _check(spec: S.ModelSpec, x: np.ndarray, dtype: str = "float32", tol: float = 1e-5) -> None:
    weights = random_weights(spec, dtype=dtype)
    got, ref = Stack("tensorflow").build(spec, dtype=dtype), Stack("numpy").build(spec, dtype=dtype)
    got.set_weights(weights)
    ref.set_weights(weights)
    np.testing.assert_allclose(got.predict(x), ref.predict(x), rtol=tol, atol=tol)
    y = np.random.default_rng(3).normal(size=(len(x), *spec.output_shape)).astype(dtype)
    rule = Optimizer("sgd", lr=0.1)
    loss, want = float(got.train_step("mse", rule)(x, y)), float(ref.train_step("mse", rule)(x, y))
    assert loss == pytest.approx(want, rel=tol, abs=tol)
    after, expected = got.get_weights(), ref.get_weights()
    for name in weights:
        np.testing.assert_allclose(after[name], expected[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_operator_paths_match_reference(name):
    spec = SPECS[name]
    _check(spec, np.random.default_rng(1).normal(size=(3, *spec.input_shape)).astype(np.float32))


def test_negative_indices_from_the_input_count_from_the_end():
    _check(_negative_indices(), np.random.default_rng(1).integers(0, 9, (3, 4)))


def test_operator_nodes_in_a_sequential_spec_beside_conv_layers():
    spec = _sequential()
    assert not spec.is_graph
    _check(spec, np.random.default_rng(1).normal(size=(3, *spec.input_shape)).astype(np.float32))


def test_operator_nodes_in_float64():
    spec = SPECS["conv_groups_strided_dilated_asymmetric"]
    _check(spec, np.random.default_rng(1).normal(size=(3, *spec.input_shape)), dtype="float64", tol=1e-10)
