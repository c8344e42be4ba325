"""Every layer's and loss's backward pass against central finite differences (float64)."""

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from sdk_core import (
    GELU,
    Add,
    Attention,
    AvgPool2D,
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    MaxPool2D,
    ModelSpec,
    Node,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    TransformerBlock,
)
from sdk_core.testing.op_cases import OP_SPECS, random_op_graph
from sdk_numpy._layers import cross_entropy, mse
from sdk_numpy._runtime import NumpyModel

EPS = 1e-6
TOL = 1e-6

CASES = {
    "dense": ((5,), [Dense(4)]),
    "dense_on_sequences": ((3, 5), [Dense(4, bias=False)]),
    "conv2d_stride2_pad1": ((2, 6, 6), [Conv2D(3, 3, stride=2, padding=1)]),
    "conv2d_nobias": ((2, 5, 5), [Conv2D(2, 2, bias=False)]),
    "max_pool2d": ((2, 4, 4), [MaxPool2D(2)]),
    "max_pool2d_overlapping": ((2, 5, 5), [MaxPool2D(3, stride=1)]),
    "avg_pool2d": ((2, 5, 5), [AvgPool2D(2, stride=1)]),
    "flatten": ((2, 3, 3), [Flatten(), Dense(2)]),
    "relu": ((6,), [ReLU()]),
    "gelu": ((6,), [GELU()]),
    "tanh": ((6,), [Tanh()]),
    "sigmoid": ((6,), [Sigmoid()]),
    "softmax": ((6,), [Softmax()]),
    "dropout": ((8,), [Dropout(0.5)]),
    "batchnorm_vectors": ((3,), [BatchNorm()]),
    "batchnorm_images": ((2, 3, 3), [BatchNorm()]),
    "layernorm": ((4, 6), [LayerNorm()]),
    "attention_causal": ((4, 6), [Attention(2)]),
    "attention_full": ((4, 6), [Attention(3, causal=False)]),
    "transformer_block": ((4, 8), [TransformerBlock(2)]),
    "transformer_block_dropout": ((4, 8), [TransformerBlock(2, dropout=0.3)]),
    "lenet_like": ((1, 8, 8), [Conv2D(2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(3), Tanh(), Dense(2)]),
}


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Relative error; a gradient that is truly zero (a key bias under softmax) is compared in
    absolute terms instead, where finite differences leave only rounding noise (< 1e-8)."""
    diff = np.linalg.norm(a - b)
    if np.linalg.norm(b) < 1e-8:
        return 0.0 if diff < 1e-8 else float(diff)
    return float(diff / (np.linalg.norm(a) + np.linalg.norm(b)))


def numeric(f, array: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(array)
    it = np.nditer(array, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = array[i]
        array[i] = old + EPS
        up = f()
        array[i] = old - EPS
        down = f()
        array[i] = old
        grad[i] = (up - down) / (2 * EPS)
    return grad


def check_model(spec: ModelSpec, x: np.ndarray, seed: int = 0, initial: bool = False) -> None:
    model = NumpyModel(spec, "float64", seed=seed)
    if initial:  # start from the spec's initial weights (a variance of one, say), not zeros
        model.set_weights(spec.init_weights(seed, "float64"))
    for op in model.ops:
        op.input_grad = True  # training skips it; here the input gradient is checked too
    rng = np.random.default_rng(seed + 1)
    for name, value in model.params.items():  # move away from the zero / one initial values
        model.params[name] = value + rng.normal(0, 0.3, value.shape)
    r = rng.normal(size=(len(x),) + spec.output_shape)
    state = model.rng.bit_generator.state

    def f() -> float:
        model.rng.bit_generator.state = state  # the same dropout mask every pass
        return float(np.sum(model.forward(x, training=True) * r))

    f()
    grads = model.backward(r)
    dx = model.dinput
    trainable = [p.name for p in spec.layout() if p.trainable]
    assert sorted(grads) == sorted(trainable)
    for name in trainable:
        err = rel_error(grads[name], numeric(f, model.params[name]))
        assert err < TOL, f"{name}: relative error {err:.2e}"
    if spec.input_dtype == "float32":
        err = rel_error(dx, numeric(f, x))
        assert err < TOL, f"input: relative error {err:.2e}"


@pytest.mark.parametrize("case", CASES)
def test_layer_gradients(case):
    shape, layers = CASES[case]
    spec = ModelSpec(input_shape=shape, layers=layers)
    x = np.random.default_rng(7).normal(size=(3,) + shape)
    check_model(spec, x)


GRAPHS = {
    "residual_add": (
        (2, 6, 6),
        [
            Node("a", Conv2D(3, 3, padding="same")),
            Node("bn", BatchNorm()),
            Node("skip", Conv2D(3, 1), "input"),
            Node("sum", Add(), ["bn", "skip"]),
            Node("relu", ReLU()),
            Node("pool", GlobalAvgPool()),
            Node("out", Dense(2)),
        ],
    ),
    "branches_concat": (
        (5,),
        [
            Node("a", Dense(4)),
            Node("b", Dense(3), "input"),
            Node("t", Tanh(), "a"),
            Node("cat", Concat(), ["t", "b", "input"]),
            Node("out", Dense(2)),
        ],
    ),
    "one_output_feeds_three": (
        (4, 6),
        [
            Node("attn", Attention(2, causal=False)),
            Node("sum", Add(), ["attn", "input", "attn"]),
            Node("ln", LayerNorm()),
            Node("pool", GlobalAvgPool()),
        ],
    ),
}


@pytest.mark.parametrize("case", GRAPHS)
def test_graph_gradients(case):
    """Gradients through merges: a node that feeds several others sums their gradients."""
    shape, nodes = GRAPHS[case]
    spec = ModelSpec.from_nodes(shape, nodes)
    x = np.random.default_rng(7).normal(size=(3,) + shape)
    check_model(spec, x)


@pytest.mark.parametrize("max_len", [0, 5])
def test_embedding_gradients(max_len):
    spec = ModelSpec(input_shape=(5,), input_dtype="int64", layers=[Embedding(7, 4, max_len=max_len)])
    x = np.random.default_rng(3).integers(0, 7, size=(3, 5))
    check_model(spec, x)


def test_small_gpt_gradients():
    from sdk_core import zoo

    spec = zoo.gpt(vocab_size=6, max_len=4, dim=8, heads=2, blocks=1)
    x = np.random.default_rng(5).integers(0, 6, size=(2, 4))
    check_model(spec, x)


@pytest.mark.parametrize(
    "loss, target",
    [
        (cross_entropy, lambda rng: rng.integers(0, 5, size=(3, 4))),
        (mse, lambda rng: rng.normal(size=(3, 4, 5))),
    ],
)
def test_loss_gradients(loss, target):
    rng = np.random.default_rng(11)
    out, y = rng.normal(size=(3, 4, 5)), target(rng)
    _, grad = loss(out.copy(), y)
    err = rel_error(grad, numeric(lambda: float(loss(out.copy(), y)[0]), out))
    assert err < TOL


def test_cross_entropy_value_matches_the_definition():
    logits = np.array([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    value, _ = cross_entropy(logits, np.array([0, 2]))
    expected = np.mean([-np.log(np.exp(2.0) / np.exp([2.0, 1.0, 0.1]).sum()), np.log(3.0)])
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("case", sorted(OP_SPECS))
def test_operator_gradients(case):
    """Every operator node's hand-written backward (the kit's reference) against finite
    differences: the gradients of its weights and of the model's input."""
    spec = OP_SPECS[case]
    if spec.input_dtype == "int64":
        x = np.random.default_rng(7).integers(0, 9, size=(3,) + spec.input_shape)
    else:
        x = np.random.default_rng(7).normal(size=(3,) + spec.input_shape)
    check_model(spec, x, initial=True)


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_random_operator_graph_gradients(data):
    spec = random_op_graph(data.draw)
    x = np.random.default_rng(0).normal(size=(3,) + spec.input_shape)
    check_model(spec, x, initial=True)
