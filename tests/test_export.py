"""ONNX export written by the core: every layer and zoo model against the NumPy reference in
ONNX Runtime, the checker, metadata, int8 (static and from codebooks) and ``sdk export``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx", reason="ONNX export needs: pip install 'sdk-core[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="running the exported models needs onnxruntime")

import sdk_core  # noqa: E402  (after the skips: the module needs onnx)
from sdk_core import SdkError, SpecError, Stack, zoo  # noqa: E402
from sdk_core.export import metadata_of, spec_of, to_onnx  # noqa: E402
from sdk_core.export.int8 import codebook_int8, quantize_static  # noqa: E402
from sdk_core.model import spec as S  # noqa: E402
from sdk_core.testing.cases import LAYER_CASES, inputs, random_weights  # noqa: E402

MODELS = {**{name: case.spec for name, case in LAYER_CASES.items()}, **{n: zoo.get(n) for n in zoo.ZOO}}
GRAPHS = [name for name in LAYER_CASES if name.startswith("graph_")]
SDK = [sys.executable, "-m", "sdk_core"]


def run_onnx(model, x, optimize=True):
    options = ort.SessionOptions()
    if not optimize:  # no fusion: int8 weights are dequantized, not multiplied in int8
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def reference(spec, weights, x):
    stack = Stack("numpy").build(spec)
    stack.set_weights(weights)
    return stack.predict(x)


@pytest.mark.parametrize("opset", [13, 17, 20, 21])
@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_the_reference(name, opset):
    spec = MODELS[name]
    weights = random_weights(spec, seed=3)
    x = inputs(spec, 5, seed=4)
    if opset < 17 and any(p is not None and p.op == "LayerNormalization" for p in spec.plans):
        with pytest.raises(SdkError, match=r"\(LayerNormalization\) needs opset 17 or later"):
            to_onnx(spec, weights, opset=opset)
        return
    got = run_onnx(to_onnx(spec, weights, opset=opset), x)
    np.testing.assert_allclose(got, reference(spec, weights, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "name", ["lenet5", "gpt", "transformer_block", "batchnorm_images", "graph_resnet_block", "graph_encoder_block"]
)
def test_model_passes_the_full_checker_and_strict_shape_inference(name):
    spec = MODELS[name]
    model = to_onnx(spec, random_weights(spec))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "batch" and [d.dim_value for d in out[1:]] == list(spec.output_shape)
    elem = inferred.graph.input[0].type.tensor_type.elem_type
    assert elem == (onnx.TensorProto.INT64 if spec.input_dtype == "int64" else onnx.TensorProto.FLOAT)


@pytest.mark.parametrize("opset", [13, 17, 20, 21])
@pytest.mark.parametrize("name", GRAPHS)
def test_graph_values_are_unique_and_weights_keep_their_canonical_names(name, opset):
    spec = MODELS[name]
    model = to_onnx(spec, random_weights(spec), opset=opset)
    weights = {p.name for p in spec.layout()}
    initializers = [i.name for i in model.graph.initializer]
    outputs = [o for n in model.graph.node for o in n.output]
    assert weights <= set(initializers) and len(set(initializers)) == len(initializers)
    assert len(set(outputs)) == len(outputs) and not set(outputs) & set(initializers)


def test_merges_count_a_repeated_input_and_join_sequences_on_the_last_axis():
    spec = S.ModelSpec.from_nodes(
        (4, 6),
        [
            S.Node("a", S.Dense(6)),
            S.Node("twice", S.Add(), ["a", "a", "input"]),  # three inputs: Sum; "a" counts twice
            S.Node("b", S.Dense(3), "input"),
            S.Node("cat", S.Concat(), ["twice", "b", "input"]),
            S.Node("pool", S.GlobalAvgPool()),
        ],
    )
    weights = random_weights(spec, seed=1)
    x = inputs(spec, 3, seed=2)
    for opset in (13, 17, 18, 21):
        model = to_onnx(spec, weights, opset=opset)
        assert {"Sum", "Concat", "ReduceMean"} <= {n.op_type for n in model.graph.node}
        np.testing.assert_allclose(run_onnx(model, x), reference(spec, weights, x), rtol=1e-4, atol=1e-4)


def test_batch_axis_is_dynamic():
    spec = zoo.lenet5()
    weights = random_weights(spec)
    model = to_onnx(spec, weights)
    for n in (1, 7, 64):
        x = inputs(spec, n, seed=n)
        assert run_onnx(model, x).shape == (n, 10)


def test_metadata_holds_the_spec_and_version_and_names_are_canonical():
    spec = zoo.gpt()
    model = to_onnx(spec, spec.init_weights(), metadata={"note": "kept"})
    meta = metadata_of(model)
    assert meta["sdk_core.version"] == sdk_core.__version__ and meta["note"] == "kept"
    assert spec_of(model) == spec and meta["sdk_core.spec"] == json.loads(spec.to_json())
    assert {i.name for i in model.graph.initializer} >= {p.name for p in spec.layout()}


def test_dropout_is_identity_and_attention_keeps_its_causal_mask():
    spec = S.ModelSpec((4, 8), [S.Attention(2), S.Dropout(0.5)])
    weights = random_weights(spec)
    x = inputs(spec, 3)
    model = to_onnx(spec, weights)
    later = x.copy()
    later[:, -1] += 5.0  # the last position changes: with a causal mask the others cannot see it
    a, b = run_onnx(model, x), run_onnx(model, later)
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[:, -1], b[:, -1])
    assert "Dropout" not in {n.op_type for n in model.graph.node}


def test_bad_requests_fail_clearly():
    spec = zoo.mlp()
    weights = spec.init_weights()

    class Strange(S.Layer):
        type = "strange"

    odd = S.ModelSpec((4,), [S.Dense(3), Strange()])
    with pytest.raises(SpecError, match=r"layer 1 \(strange\): the ONNX exporter cannot express"):
        to_onnx(odd, odd.init_weights())
    odd_graph = S.ModelSpec.from_nodes((4,), [S.Node("fc", S.Dense(3)), S.Node("odd", Strange())])
    with pytest.raises(SpecError, match=r"node 'odd' \(strange\): the ONNX exporter cannot express"):
        to_onnx(odd_graph, odd_graph.init_weights())
    with pytest.raises(SdkError, match="'opset' must be an int from 13"):
        to_onnx(spec, weights, opset=11)
    bad = dict(weights)
    bad["0.weight"] = np.full_like(bad["0.weight"], np.nan)
    with pytest.raises(SdkError, match=r"'0\.weight' holds NaN"):
        to_onnx(spec, bad)
    with pytest.raises(SpecError, match="missing"):
        to_onnx(spec, {k: v for k, v in weights.items() if k != "0.bias"})


LAYERS = st.sampled_from(["relu", "tanh", "sigmoid", "gelu", "dense", "dropout", "softmax", "batchnorm"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(LAYERS, min_size=1, max_size=5),
    conv=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1)),
    seed=st.integers(0, 1000),
)
def test_random_models_match_the_reference(kinds, conv, seed):
    """Random conv + pool + flatten + (dense, activations, norms) stacks: same outputs."""
    filters, kernel, stride, padding = conv
    layers: list[S.Layer] = [S.Conv2D(filters, kernel, stride, padding), S.MaxPool2D(2, stride=1), S.Flatten()]
    layers += [S.Dense(5) if k == "dense" else S.LAYER_TYPES[k]() for k in kinds]
    spec = S.ModelSpec((2, 6, 6), layers)
    weights = random_weights(spec, seed=seed)
    x = inputs(spec, 3, seed=seed + 1)
    np.testing.assert_allclose(run_onnx(to_onnx(spec, weights), x), reference(spec, weights, x), rtol=1e-4, atol=1e-4)


# -- int8 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_lenet():
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    spec = zoo.lenet5(input_shape=(1, 16, 16))
    x_train, y_train, x_test, y_test = sdk_core.digits(image_size=16)
    stack = Stack("numpy").build(spec)
    stack.fit(x_train, y_train, epochs=6, batch_size=32, optimizer=sdk_core.Optimizer("adam", lr=3e-3))
    return stack, (x_train, x_test, y_test)


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_static_int8_keeps_accuracy_and_shrinks_the_file(trained_lenet, method):
    stack, (x_train, x_test, y_test) = trained_lenet
    fp32 = to_onnx(stack.spec, stack.get_weights())
    int8 = quantize_static(fp32, x_train[:256], method)
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    accuracy = {name: (run_onnx(m, x_test).argmax(1) == y_test).mean() for name, m in (("fp32", fp32), ("int8", int8))}
    assert accuracy["int8"] >= accuracy["fp32"] - 0.01, accuracy
    assert fp32.ByteSize() / int8.ByteSize() > 2.2  # 16x16 LeNet: scales and graph weigh more here
    assert spec_of(int8) == stack.spec


def test_static_int8_of_a_residual_graph_stays_close_to_float():
    spec = LAYER_CASES["graph_resnet_block"].spec
    weights = random_weights(spec, seed=3)
    x = inputs(spec, 512, seed=5)
    fp32 = to_onnx(spec, weights)
    int8 = quantize_static(fp32, x[:256])
    ops = [n.op_type for n in int8.graph.node]
    assert {"QuantizeLinear", "DequantizeLinear", "Add", "GlobalAveragePool"} <= set(ops) and "Conv" in ops
    want, got = run_onnx(fp32, x[256:]), run_onnx(int8, x[256:])
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max())
    assert spec_of(int8) == spec


def test_codebook_weights_go_into_8_bits_exactly(trained_lenet):
    from sdk_core import compress

    stack, (_, x_test, _) = trained_lenet
    shared = stack.to("numpy")
    compress.prune(shared, 0.8)
    compress.share_weights(shared)
    weights = shared.get_weights()
    model, how = codebook_int8(to_onnx(shared.spec, weights), weights)
    kernels = {p.name for p in shared.spec.layout() if len(p.shape) >= 2}
    assert set(how) == kernels and set(how.values()) <= {"int8", "codebook"}
    np.testing.assert_allclose(run_onnx(model, x_test), shared.predict(x_test), rtol=1e-5, atol=1e-5)
    assert model.ByteSize() * 3 < to_onnx(shared.spec, weights).ByteSize()


def test_values_on_an_int8_grid_use_dequantize_linear():
    spec = S.ModelSpec((6,), [S.Dense(4)])
    weights = spec.init_weights()
    weights["0.weight"] = (np.arange(24).reshape(6, 4) - 12).astype(np.float32) * np.float32(0.125)
    model, how = codebook_int8(to_onnx(spec, weights), weights)
    assert how == {"0.weight": "int8"} and "DequantizeLinear" in {n.op_type for n in model.graph.node}
    x = inputs(spec, 4)
    exact = run_onnx(to_onnx(spec, weights), x, optimize=False)
    np.testing.assert_array_equal(run_onnx(model, x, optimize=False), exact)
    np.testing.assert_allclose(run_onnx(model, x), exact, rtol=0.02, atol=0.02)  # fused: int8 products


# -- sdk export ---------------------------------------------------------------------------------
def test_sdk_export_writes_checked_files_and_refuses_bad_input(trained_lenet, tmp_path):
    stack, (_, x_test, y_test) = trained_lenet
    weights = tmp_path / "lenet.safetensors"
    stack.save(str(weights))
    out = tmp_path / "lenet.onnx"
    done = subprocess.run(
        SDK + ["export", "--weights", str(weights), "--out", str(out), "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes"] == out.stat().st_size
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(run_onnx(model, x_test), stack.predict(x_test), rtol=1e-4, atol=1e-4)
    int8 = tmp_path / "lenet.int8.onnx"
    done = subprocess.run(
        SDK + ["export", "--weights", str(weights), "--out", str(int8), "--quantize", "int8", "--opset", "19"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (run_onnx(onnx.load(int8), x_test).argmax(1) == y_test).mean() > 0.8
    before = weights.read_bytes()
    for argv, message in (
        (["--out", str(weights)], "also an input"),
        (["--out", str(tmp_path)], "is a directory"),
        (["--out", str(tmp_path / "no" / "x.onnx")], "does not exist"),
        (["--out", str(out), "--opset", "5"], "'opset' must be an int from 13"),
    ):
        bad = subprocess.run(SDK + ["export", "--weights", str(weights), *argv], capture_output=True, text=True)
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert weights.read_bytes() == before
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 40)
    bad = subprocess.run(
        SDK + ["export", "--weights", str(garbage), "--out", str(tmp_path / "g.onnx")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "not a valid safetensors file" in bad.stderr
    assert not (tmp_path / "g.onnx").exists()


OP_CASES = [name for name in LAYER_CASES if name.startswith("op_")]


@pytest.mark.parametrize("name", OP_CASES)
def test_operator_nodes_are_written_one_to_one(name):
    """Every operator node is one ONNX node of its own operator (Split: one Split for all its
    outputs), folded ones included, and the weights keep their canonical names."""
    spec = MODELS[name]
    model = to_onnx(spec, random_weights(spec), opset=18)
    written = [n.op_type for n in model.graph.node]
    for layer in spec.layers:
        assert layer.op in written, f"{layer.op} is not in {written}"
    assert len(written) == len(spec.layers) + 1  # and the output's Identity
    assert {p.name for p in spec.layout()} <= {i.name for i in model.graph.initializer}


def test_a_folded_shape_subgraph_keeps_the_batch_free_in_onnx():
    spec = MODELS["op_folded_shapes"]
    weights = random_weights(spec, seed=1)
    model = to_onnx(spec, weights)
    for n in (1, 7):
        x = inputs(spec, n, seed=2)
        np.testing.assert_allclose(run_onnx(model, x), reference(spec, weights, x), rtol=1e-4, atol=1e-4)
