"""ModelSpec validation, shape inference, JSON round trip and the canonical layout."""

import json

import numpy as np
import pytest

from sdk_core import (
    Conv2D,
    Dense,
    Embedding,
    Flatten,
    ModelSpec,
    Optimizer,
    ReLU,
    Schedule,
    SpecError,
    TransformerBlock,
    zoo,
)
from sdk_core.model.spec import LAYER_TYPES


def test_lenet5_is_the_classic_shape():
    spec = zoo.lenet5()
    assert spec.shapes[1] == (6, 28, 28) and spec.shapes[3] == (6, 14, 14)
    assert spec.shapes[4] == (16, 10, 10) and spec.shapes[6] == (16, 5, 5)
    assert spec.shapes[7] == (400,) and spec.output_shape == (10,)
    assert [p.shape for p in spec.layout()[:2]] == [(6, 1, 5, 5), (6,)]
    assert spec.param_count() == 61706  # the published LeNet-5 count for 10 classes


def test_gpt_layout_names_and_shapes():
    spec = zoo.gpt(vocab_size=16, max_len=8, dim=32, heads=4, blocks=1)
    layout = {p.name: p.shape for p in spec.layout()}
    assert layout["0.weight"] == (16, 32) and layout["0.position"] == (8, 32)
    assert layout["1.attn.q.weight"] == (32, 32) and layout["1.fc1.weight"] == (32, 128)
    assert layout["1.fc2.weight"] == (128, 32) and layout["3.weight"] == (32, 16)
    assert spec.output_shape == (8, 16)


@pytest.mark.parametrize("spec", [zoo.mlp(), zoo.lenet5(), zoo.gpt()], ids=lambda s: s.name)
def test_json_round_trip(spec):
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec and again.shapes == spec.shapes
    assert json.loads(again.to_json()) == json.loads(spec.to_json())


def test_every_layer_type_round_trips_through_json():
    assert set(LAYER_TYPES) >= {
        "dense",
        "conv2d",
        "max_pool2d",
        "avg_pool2d",
        "flatten",
        "relu",
        "gelu",
        "tanh",
        "sigmoid",
        "softmax",
        "dropout",
        "batchnorm",
        "layernorm",
        "embedding",
        "attention",
        "transformer_block",
    }


@pytest.mark.parametrize(
    "layers, message",
    [
        ([{"type": "dense", "units": 0}], "layer 0 (dense): 'units' must be a positive int (got 0)"),
        ([{"type": "flatten"}, {"type": "conv3d"}], "layer 1: unknown layer type 'conv3d'"),
        ([{"type": "dense", "unit": 3}], "layer 0 (dense): unknown field 'unit'"),
        ([{"type": "dense"}], "layer 0 (dense): missing 1 required positional argument: 'units'"),
        ([{"type": "dropout", "rate": 1.5}], "layer 0 (dropout): 'rate' must be a number in [0, 1) (got 1.5)"),
        (
            [{"type": "conv2d", "filters": 4, "kernel_size": 3}],
            "layer 0 (conv2d): needs a (channels, height, width) input (got shape (64,))",
        ),
        (["dense"], "layer 0: must be an object with a 'type' (got str)"),
        ([], "spec has no layers"),
    ],
)
def test_bad_specs_name_the_layer_and_field(layers, message):
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict({"input_shape": [64], "layers": layers})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_shape_errors_name_the_layer():
    with pytest.raises(SpecError, match=r"layer 3 \(conv2d\): input size 4 is smaller than the kernel 5"):
        ModelSpec(input_shape=(1, 12, 12), layers=[Conv2D(4, 5), ReLU(), LAYER_TYPES["max_pool2d"](2), Conv2D(8, 5)])
    with pytest.raises(
        SpecError, match=r"layer 1 \(transformer_block\): model width 30 is not divisible by 'num_heads' 4"
    ):
        ModelSpec(input_shape=(8,), input_dtype="int64", layers=[Embedding(10, 30), TransformerBlock(4)])
    with pytest.raises(SpecError, match="layer 1 \\(embedding\\): an embedding must be the first layer"):
        ModelSpec(input_shape=(8,), layers=[Dense(4), Embedding(10, 4)])


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "spec is not valid JSON"),
        ("[1, 2]", "spec must be a JSON object (got list)"),
        ('{"layers": []}', "'input_shape' is missing"),
        (
            '{"input_shape": [0], "layers": [{"type": "relu"}]}',
            "'input_shape' must be a non-empty list of positive ints",
        ),
        ('{"input_shape": [4], "layers": {"type": "relu"}}', "'layers' must be a list (got dict)"),
        ('{"input_shape": [4], "input_dtype": "int8", "layers": [{"type": "relu"}]}', "'input_dtype' must be one of"),
    ],
)
def test_malformed_json(text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ModelSpec.from_json(text)


def test_init_weights_are_deterministic_and_match_the_layout():
    spec = zoo.lenet5()
    a, b, c = spec.init_weights(0), spec.init_weights(0), spec.init_weights(1)
    assert list(a) == [p.name for p in spec.layout()]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], c["0.weight"])
    assert a["0.weight"].dtype == np.float32 and spec.init_weights(0, "float64")["0.weight"].dtype == np.float64
    assert np.all(a["0.bias"] == 0)
    bound = np.sqrt(6 / (25 + 150))
    assert np.abs(a["0.weight"]).max() <= bound


def test_check_weights_and_inputs():
    spec = ModelSpec(input_shape=(4,), layers=[Dense(3), Flatten()])
    weights = spec.init_weights()
    spec.check_weights(weights)
    with pytest.raises(SpecError, match=r"'0.weight' has shape \(3, 4\), the model needs \(4, 3\)"):
        spec.check_weights({**weights, "0.weight": np.zeros((3, 4))})
    with pytest.raises(SpecError, match=r"missing \['0.bias'\]"):
        spec.check_weights({"0.weight": weights["0.weight"]})
    with pytest.raises(SpecError, match=r"input has shape \(2, 5\), the model needs \(batch, 4\)"):
        spec.check_input(np.zeros((2, 5)))


def test_optimizer_and_schedule_validation_and_rates():
    with pytest.raises(SpecError, match="'name' must be one of sgd, adagrad, rmsprop, adam, adamw \\(got 'adamax'\\)"):
        Optimizer("adamax")
    with pytest.raises(SpecError, match=r"'lr' must be a finite number > 0\.0"):
        Optimizer("sgd", lr=0)
    with pytest.raises(SpecError, match="'nesterov' needs the sgd optimizer"):
        Optimizer("adam", nesterov=True)
    assert Optimizer("adagrad").eps == 1e-10 and Optimizer("adam").eps == 1e-8
    warm = Schedule("cosine", warmup_steps=2, total_steps=6, min_lr=0.0)
    rates = [warm.lr_at(1.0, t) for t in range(8)]
    assert rates[:3] == [0.5, 1.0, 1.0]
    assert rates[4] == pytest.approx(0.5) and rates[6] == pytest.approx(0.0) and rates[7] == pytest.approx(0.0)
    step = Schedule("step", step_size=2, gamma=0.5)
    assert [step.lr_at(1.0, t) for t in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert Optimizer("sgd", lr=0.1, schedule={"kind": "step", "step_size": 1}).lr_at(2) == pytest.approx(0.001)


def test_flop_counts_by_hand():
    from sdk_core.model.estimate import forward_flops, training_flops

    assert forward_flops(ModelSpec(input_shape=(64,), layers=[Dense(32), ReLU(), Dense(10)])) == 2 * (64 * 32 + 32 * 10)
    conv = ModelSpec(input_shape=(3, 8, 8), layers=[Conv2D(4, 3, padding=1)])
    assert forward_flops(conv) == 2 * 3 * 9 * 4 * 8 * 8
    block = ModelSpec(input_shape=(5,), input_dtype="int64", layers=[Embedding(7, 8), TransformerBlock(2)])
    assert forward_flops(block) == 2 * 5 * 8 * 8 * 4 + 4 * 5 * 5 * 8 + 4 * 5 * 8 * 32
    assert training_flops(conv) == 3 * forward_flops(conv)
