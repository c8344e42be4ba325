"""``sdk import`` / ``sdk_core.import_onnx``: real architectures exported by torch, imported,
run in every installed framework against ONNX Runtime, trained, re-exported and compressed.
Skipped with the reason when torch, onnx or onnxruntime is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the import tests export real models with torch")
onnx = pytest.importorskip("onnx", reason="sdk import needs onnx: pip install 'sdk-core[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the import tests compare with ONNX Runtime")

from sdk_core import Optimizer, PluginManager, SdkError, SdkWarning, Stack, import_onnx  # noqa: E402
from sdk_core.model import onnx_import  # noqa: E402
from sdk_core.model.weights import read_metadata  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from onnx_models import MobileNetV2, ResNet18, count  # noqa: E402

pytestmark = pytest.mark.needs_framework("numpy")
FRAMEWORKS = sorted(n for n, f in PluginManager().frameworks().items() if f.installed and f.trains)


def export(model, x, path: Path, training: bool = False, opset: int = 17) -> Path:
    model.train(training)
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            training=mode,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
            opset_version=opset,
        )
    return path


class SmallNet(torch.nn.Module):
    """Conv + batch norm, a depthwise residual, GELU (erf) and a classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = torch.nn.Linear(8 * 8 * 8, classes)

    def forward(self, x):
        h = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = h + self.conv2(h)
        return self.fc(torch.nn.functional.gelu(torch.flatten(h, 1)))


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("onnx")
    small = SmallNet()
    return {
        "small": export(small, torch.randn(2, 3, 16, 16), d / "small.onnx"),
        "small_train": export(small, torch.randn(2, 3, 16, 16), d / "small_train.onnx", training=True),
        "resnet18": export(ResNet18(), torch.randn(2, 3, 32, 32), d / "resnet18.onnx"),
        "resnet18_train": export(ResNet18(), torch.randn(2, 3, 32, 32), d / "resnet18_train.onnx", training=True),
        "mobilenetv2": export(MobileNetV2(), torch.randn(2, 3, 32, 32), d / "mobilenetv2.onnx"),
    }


def sdk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdk_core", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model", ["small", "resnet18", "mobilenetv2"])
def test_every_framework_gives_onnxruntimes_outputs(files, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdkWarning)
        spec, weights = import_onnx(files[model])
    x = images(2, spec.input_shape[-1], seed=1)
    want = ort_run(files[model], x)
    for framework in FRAMEWORKS:
        stack = Stack(framework).build(spec)
        stack.set_weights(weights)
        np.testing.assert_allclose(stack.predict(x), want, rtol=1e-4, atol=1e-4, err_msg=framework)


def test_torchvision_architectures_keep_their_parameters(files):
    """Exported in training mode, ResNet-18 keeps its batch norms: torchvision's count exactly.
    Eval-mode exports fold them into the convolutions: the import says so, and the count
    it reports plus the folded parameters is torch's."""
    assert count(ResNet18()) == 11_689_512 and count(MobileNetV2()) == 3_504_872
    spec, _ = import_onnx(files["resnet18_train"])
    assert spec.param_count() == 11_689_512
    types = [layer.type for layer in spec.layers]
    assert types.count("conv2d") == 20 and types.count("batchnorm") == 20 and types.count("add") == 8
    for name, total in (("resnet18", 11_689_512), ("mobilenetv2", 3_504_872)):
        with pytest.warns(SdkWarning, match="export with training=torch.onnx.TrainingMode.TRAINING"):
            done = onnx_import.read(files[name])
        assert done.spec.param_count() + done.folded_batchnorm_parameters == total, name
        assert done.folded_batchnorm_parameters > 0


@pytest.mark.parametrize("variant", ["fresh", "trained", "conv_bias"])
def test_batch_norms_the_dynamo_exporter_folded_are_reported_as_torchscripts_are(files, tmp_path, variant):
    """The dynamo exporter's optimizer folds a batch norm into the convolution before it and
    keeps the weight's name: the import finds the fold in the node's metadata and gives the
    TorchScript export's warning and report. What torch's count loses is two parameters per
    channel, less the bias the folded convolution gained (none from a fresh batch norm, whose
    shift is zero), plus the convolution's own bias (in the file's export signature)."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    torch.manual_seed(0)
    model = SmallNet()
    if variant == "conv_bias":
        model.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
    if variant != "fresh":  # statistics as training leaves them
        with torch.no_grad():
            for t in (model.bn1.running_mean, model.bn1.weight, model.bn1.bias):
                t.normal_()
            model.bn1.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.randn(2, 3, 16, 16),), str(path), dynamo=True,
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        )  # fmt: skip
    notes, done = {}, {}
    for name, file in (("dynamo", path), ("torchscript", files["small"])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            done[name] = onnx_import.read(file)
        notes[name] = [str(w.message) for w in caught if "BatchNormalization" in str(w.message)]
    assert len(notes["dynamo"]) == 1 and notes["dynamo"] == notes["torchscript"]
    assert done["torchscript"].folded_batchnorm_parameters == 8  # the legacy exporter's fold: a bias per channel
    done = done["dynamo"]
    assert done.folded_batchnorm_parameters == {"fresh": 16, "trained": 8, "conv_bias": 16}[variant]
    assert done.spec.param_count() + done.folded_batchnorm_parameters == count(model)
    x = images(2, 16, seed=1)
    stack = Stack("numpy").build(done.spec)
    stack.set_weights(done.weights)
    np.testing.assert_allclose(stack.predict(x), ort_run(path, x), rtol=1e-4, atol=1e-4)


def test_weights_keep_their_onnx_names(files, tmp_path):
    out = tmp_path / "small.safetensors"
    result = sdk("import", str(files["small_train"]), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parameters"] == count(SmallNet()) and report["operators"]["Conv"] == 2
    meta = read_metadata(str(out))
    names = json.loads(meta["onnx_names"])
    assert names["conv1.weight"] == "conv1.weight" and names["bn1.running_mean"] == "bn1.running_mean"
    assert names["fc.weight"] == "fc.weight"
    nested = onnx_import.read(files["resnet18_train"]).onnx_names
    assert nested["layer1_0_conv1.weight"] == "layer1.0.conv1.weight"


def test_three_sgd_steps_lower_the_loss_and_the_weights_serve_everywhere(files, tmp_path):
    spec, weights = import_onnx(files["small_train"])
    x = images(32, 16, seed=2)
    y = np.random.default_rng(3).integers(0, 10, 32)
    trained = {}
    for framework in FRAMEWORKS:
        stack = Stack(framework).build(spec)
        stack.set_weights(weights)
        step = stack.train_step("cross_entropy", Optimizer("sgd", lr=0.05))
        losses = [float(step(x, y)) for _ in range(4)]
        assert losses[3] < losses[0], (framework, losses)
        path = tmp_path / f"{framework}.safetensors"
        stack.save(str(path))
        trained[framework] = (path, stack.predict(x))
    for framework, (path, want) in trained.items():
        for other in FRAMEWORKS:
            got = Stack(other).load(str(path)).predict(x)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{framework} -> {other}")


def test_the_import_re_exports_to_what_onnxruntime_ran(files, tmp_path):
    imported, back = tmp_path / "r.safetensors", tmp_path / "r.onnx"
    assert sdk("import", str(files["resnet18"]), "--out", str(imported)).returncode == 0
    result = sdk("export", "--weights", str(imported), "--out", str(back))
    assert result.returncode == 0, result.stderr
    x = images(2, 32, seed=4)
    np.testing.assert_allclose(ort_run(back, x), ort_run(files["resnet18"], x), rtol=1e-4, atol=1e-4)


def test_compression_applies_to_an_imported_model(files, tmp_path):
    imported, packed = tmp_path / "s.safetensors", tmp_path / "s.sdkz"
    assert sdk("import", str(files["small"]), "--out", str(imported)).returncode == 0
    result = sdk("compress", "--weights", str(imported), "--out", str(packed), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["compression_ratio"] > 2


def test_transfer_learning_replaces_the_head(files, tmp_path):
    """`sdk train --init imported --num-classes 3`: the classifier is fresh and of 3 outputs,
    every other weight is the imported one; the Python API is `replace_head`."""
    spec, weights = import_onnx(files["small_train"])
    stack = Stack("numpy").build(spec)
    stack.set_weights(weights)
    stack.replace_head(3, seed=5)
    after = stack.get_weights()
    assert stack.spec.output_shape == (3,) and after["fc.weight"].shape == (512, 3)
    np.testing.assert_array_equal(after["conv1.weight"], weights["conv1.weight"])
    imported, tuned = tmp_path / "s.safetensors", tmp_path / "tuned.safetensors"
    assert sdk("import", str(files["small_train"]), "--out", str(imported)).returncode == 0
    result = sdk(
        "train", "--init", str(imported), "--num-classes", "10", "--epochs", "1", "--framework", "numpy",
        "--out", str(tuned), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 0.0 <= json.loads(result.stdout)["test"]["accuracy"] <= 1.0
    assert Stack("numpy").load(str(tuned)).spec.output_shape == (10,)


def make(path: Path, nodes, inputs, outputs, initializers=(), opset: int = 17) -> Path:
    h = onnx.helper
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]), str(path))
    return path


def tensor(name: str, shape) -> object:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def test_an_old_opset_is_upgraded_and_runs(tmp_path):
    """Opset 11 (Unsqueeze's axes an attribute) is upgraded to 13 with onnx.version_converter."""
    w = onnx.numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32), "fc.weight")
    nodes = [
        onnx.helper.make_node("MatMul", ["x", "fc.weight"], ["h"]),
        onnx.helper.make_node("Unsqueeze", ["h"], ["u"], axes=[1]),
        onnx.helper.make_node("Relu", ["u"], ["y"]),
    ]
    path = make(tmp_path / "old.onnx", nodes, [tensor("x", ["n", 4])], [tensor("y", ["n", 1, 3])], [w], opset=11)
    done = onnx_import.read(path)
    assert done.opset == 13
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    stack = Stack("numpy").build(done.spec)
    stack.set_weights(done.weights)
    np.testing.assert_allclose(stack.predict(x), ort_run(path, x), rtol=1e-5, atol=1e-6)


def bad_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    hard = make(
        tmp_path / "hard.onnx",
        [onnx.helper.make_node("HardSigmoid", ["x"], ["y"], name="gate")],
        [tensor("x", ["n", 4])],
        [tensor("y", ["n", 4])],
    )
    two = make(
        tmp_path / "two.onnx",
        [onnx.helper.make_node("Add", ["a", "b"], ["y"])],
        [tensor("a", ["n", 4]), tensor("b", ["n", 4])],
        [tensor("y", ["n", 4])],
    )
    return {
        "text": (text, "is not a readable ONNX model"),
        "truncated": (cut, "is not a readable ONNX model"),
        "operator": (hard, "operator HardSigmoid (opset 17) of node 'gate' is not supported"),
        "inputs": (two, "has 2 inputs (a, b)"),
    }


@pytest.mark.parametrize("case", ["text", "truncated", "operator", "inputs"])
def test_a_bad_file_is_one_line_and_nothing_is_written(files, tmp_path, case):
    path, message = bad_files(tmp_path, files["small"])[case]
    out = tmp_path / "out.safetensors"
    result = sdk("import", str(path), "--out", str(out))
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()
    with pytest.raises(SdkError, match=message.split("(")[0].strip()):
        import_onnx(path)


def test_list_ops_names_every_operator_with_its_opsets():
    result = sdk("import", "--list-ops", "--json")
    rows = {r["operator"]: r["opsets"] for r in json.loads(result.stdout)}
    assert rows["Conv"] == "13-21" and rows["LayerNormalization"] == "13-21" and "Gelu" in rows
