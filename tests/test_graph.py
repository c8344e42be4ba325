"""Graph ModelSpecs: wiring checks naming the node, JSON that keeps sequential files as they
were, name-based portable weights, the zoo's residual models and what follows them (estimates,
compression refusing clearly)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdk_core
from sdk_core import (
    Add,
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    GlobalAvgPool,
    ModelSpec,
    Node,
    ReLU,
    SdkError,
    SpecError,
    Stack,
    zoo,
)
from sdk_core.model import estimate
from sdk_core.testing.cases import LAYER_CASES, random_graph


def residual() -> ModelSpec:
    return ModelSpec.from_nodes(
        (2, 8, 8),
        [
            Node("stem", Conv2D(4, 3, padding="same")),
            Node("conv", Conv2D(4, 3, padding="same")),
            Node("bn", BatchNorm()),
            Node("sum", Add(), ["bn", "stem"]),
            Node("relu", ReLU()),
            Node("pool", GlobalAvgPool()),
            Node("fc", Dense(3)),
        ],
    )


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([Node("a", Dense(3), "b"), Node("b", Dense(3), "a")], r"node 'a': its inputs form a cycle \(a -> b -> a\)"),
        ([Node("a", Dense(3)), Node("b", Dense(3), "nowhere")], "node 'b': input 'nowhere' is no node"),
        (
            [Node("a", Dense(3)), Node("b", Dense(4), "input"), Node("c", Add(), ["a", "b"])],
            r"node 'c' \(add\): inputs of shapes \(3,\), \(4,\) cannot be added",
        ),
        (
            [Node("a", Conv2D(2, 3)), Node("b", Conv2D(2, 1), "input"), Node("c", Concat(), ["a", "b"])],
            r"node 'c' \(concat\): .* must agree on every axis but the channels",
        ),
        ([Node("a", Dense(3)), Node("b", Dense(3), "input")], "node 'a': its output is never used"),
        ([Node("a", Dense(3)), Node("a", Dense(3))], "node 'a': the name is used twice"),
        ([Node("a", Dense(3)), Node("b", Add(), "a")], r"node 'b' \(add\) takes two or more inputs \(got 1\)"),
        ([Node("a", Dense(3)), Node("b", Dense(3), ["a", "input"])], r"node 'b' \(dense\) takes one input \(got 2\)"),
        ([Node("x.y", Dense(3))], "name 'x.y' must be"),
        ([Node("input", Dense(3))], "name 'input' must be"),
    ],
)
def test_bad_graphs_are_refused_naming_the_node(nodes, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_nodes((2, 5, 5) if isinstance(nodes[0].layer, Conv2D) else (5,), nodes)


def test_graph_json_round_trips_and_sequential_json_is_unchanged():
    spec = residual()
    data = json.loads(spec.to_json())
    assert data["layers"][3] == {"name": "sum", "inputs": ["bn", "stem"], "type": "add"}
    assert ModelSpec.from_json(spec.to_json()) == spec
    lenet = zoo.lenet5()
    assert all(set(layer) - {"type"} <= {"filters", "kernel_size", "stride", "padding", "bias", "pool_size", "units"}
               for layer in json.loads(lenet.to_json())["layers"])  # fmt: skip
    assert not lenet.is_graph and ModelSpec.from_json(lenet.to_json()) == lenet
    assert [p.name for p in lenet.layout()][:2] == ["0.weight", "0.bias"]


def test_a_file_with_inputs_but_no_names_gets_index_names():
    text = json.dumps(
        {"input_shape": [4], "layers": [{"type": "dense", "units": 4}, {"type": "add", "inputs": ["0", "input"]}]}
    )
    spec = ModelSpec.from_json(text)
    assert spec.is_graph and spec.node_names == ("0", "1") and spec.sources == ((-1,), (0, -1))
    with pytest.raises(SpecError, match="'inputs' must be a list of node names"):
        ModelSpec.from_json(text.replace('["0", "input"]', "[0]"))


def test_weights_are_named_by_node_and_conv_same_keeps_the_size():
    spec = residual()
    assert [p.name for p in spec.layout()][:3] == ["stem.weight", "stem.bias", "conv.weight"]
    assert spec.shapes[1] == (4, 8, 8) and spec.layers[0].padding == 1
    with pytest.raises(SpecError, match="'padding' 'same' needs an odd 'kernel_size'"):
        Conv2D(2, 2, padding="same")


@pytest.mark.needs_framework("numpy")
def test_graph_weights_are_portable_between_frameworks(tmp_path):
    spec = residual()
    stack = Stack("numpy").build(spec, seed=3)
    path = tmp_path / "r.safetensors"
    stack.save(str(path))
    x = np.random.default_rng(0).normal(size=(4, 2, 8, 8)).astype(np.float32)
    again = Stack("numpy").load(str(path))
    assert again.spec == spec
    np.testing.assert_array_equal(again.predict(x), stack.predict(x))


def test_zoo_resnets_have_the_published_sizes():
    assert zoo.get("resnet18").param_count() == 11_689_512  # torchvision's resnet18
    assert zoo.get("resnet50").param_count() == 25_557_032  # torchvision's resnet50
    assert zoo.resnet(depth=20).param_count() == 272_186  # He et al.: 0.27 M
    flops = estimate.forward_flops(zoo.get("resnet50"))
    assert 7.9e9 < flops < 8.3e9  # 4.1 G multiply-adds (55x55 after the unpadded max pool)
    with pytest.raises(SpecError, match="'depth' must be 6n \\+ 2"):
        zoo.resnet(depth=10)
    assert (zoo.get("resnet50").name, zoo.get("resnet18").name, zoo.resnet().name) == (
        "resnet50",
        "resnet18",
        "resnet8",
    )
    bert = zoo.get("bert")
    assert bert.is_graph and bert.output_shape == (2,) and bert.input_dtype == "int64"


def test_memory_estimate_counts_a_tensor_read_by_two_nodes_once():
    spec = residual()
    chain = ModelSpec(spec.input_shape, spec.layers[:3] + spec.layers[4:])  # the same without the merge
    assert estimate.activation_values(spec) < estimate.activation_values(chain) + 2 * 4 * 8 * 8


@pytest.mark.needs_framework("numpy")
def test_compression_paths_that_need_a_sequence_refuse_graphs_clearly():
    from sdk_core import compress

    stack = Stack("numpy").build(residual())
    with pytest.raises(SdkError, match="structured pruning slims sequential models only"):
        compress.prune_structured(stack, 0.5)
    masks = compress.prune(stack, 0.5)
    assert set(masks) == {"stem.weight", "conv.weight", "fc.weight"}


@pytest.mark.needs_framework("numpy")
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), images=st.booleans())
def test_random_graphs_survive_json_and_the_reference_runs_them(seed, images):
    spec = random_graph(seed, images)
    assert ModelSpec.from_json(spec.to_json()) == spec
    x = np.random.default_rng(seed).normal(size=(2, *spec.input_shape)).astype(np.float32)
    out = Stack("numpy").build(spec).predict(x)
    assert out.shape == (2, 3) and np.isfinite(out).all()


def test_the_kit_has_graph_cases():
    assert sum(case.spec.is_graph for case in LAYER_CASES.values()) >= 8


@pytest.mark.needs_framework("numpy")
def test_a_plugin_that_runs_sequences_only_refuses_graphs_before_it_is_called():
    manager = sdk_core.PluginManager(autoload=False)
    manager.register(
        sdk_core.FrameworkHooks(
            "seqfw", runtime="sdk_numpy._runtime", api=1, version_of="numpy", unsupported=("spec:graph",)
        ),
        "seqfw",
    )
    with pytest.raises(sdk_core.NotAvailableError, match="framework 'seqfw' does not support graph specs"):
        Stack("seqfw", manager=manager).build(residual())
    assert Stack("seqfw", manager=manager).build(zoo.mlp()).predict(np.zeros((1, 64))).shape == (1, 10)
