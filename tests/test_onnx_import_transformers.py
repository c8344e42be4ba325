"""Hugging Face transformers models (small GPT2Config and BertConfig, initialised offline)
exported by torch's TorchScript exporter and its dynamo exporter, imported, run in every
installed framework against ONNX Runtime, trained and re-exported. Skipped with the reason
when torch, transformers, onnx or onnxruntime (or, for dynamo, onnxscript) is missing."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="exporting needs torch")
transformers = pytest.importorskip("transformers", reason="needs transformers (pip install 'transformers>=5')")
onnx = pytest.importorskip("onnx", reason="sdk import needs onnx")
ort = pytest.importorskip("onnxruntime", reason="the tests compare with ONNX Runtime")

from sdk_core import Optimizer, PluginManager, SdkError, SdkWarning, Stack  # noqa: E402
from sdk_core.cli import main  # noqa: E402
from sdk_core.export import to_onnx  # noqa: E402
from sdk_core.model import onnx_import  # noqa: E402

pytestmark = pytest.mark.needs_framework("numpy")
FRAMEWORKS = sorted(n for n, f in PluginManager().frameworks().items() if f.installed and f.trains)
DYNAMO = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None, reason="the dynamo exporter needs onnxscript"
)
VOCAB, T = 100, 16


class Logits(torch.nn.Module):
    """The model with token ids as its one input and logits as its one output."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, input_ids):
        return self.m(input_ids=input_ids).logits


def gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=32, use_cache=False)
    return transformers.GPT2LMHeadModel(cfg)


def bert():
    cfg = transformers.BertConfig(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128, vocab_size=VOCAB,
        max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(cfg)


def export(make, path: Path, dynamo: bool, free_length: bool = True) -> tuple[Path, int]:
    """The model exported (by dynamo with a free sequence axis unless ``free_length`` is
    false) and torch's parameter count. Its biases are random, as a trained model's are: the
    dynamo exporter's optimizer drops a bias of zeros, so a freshly made model loses them."""
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.02)
    wrapped = Logits(model).eval()
    ids = torch.randint(0, VOCAB, (2, T))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            axes = {0: torch.export.Dim("batch")}
            if free_length:  # the position table stays in the file, gathered by the length
                axes[1] = torch.export.Dim("length", max=32)
            torch.onnx.export(wrapped, (ids,), str(path), dynamo=True, dynamic_shapes={"input_ids": axes})
        else:
            torch.onnx.export(
                wrapped, (ids,), str(path), dynamo=False, input_names=["input_ids"],
                dynamic_axes={"input_ids": {0: "batch"}}, opset_version=17,
            )  # fmt: skip
    return path, sum(p.numel() for p in model.parameters())


CASES = {
    "bert-torchscript": (bert, False),
    "bert-dynamo": (bert, True),
    "gpt2-dynamo": (gpt2, True),
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    make, dynamo = CASES[request.param]
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the dynamo exporter needs onnxscript")
    path, params = export(make, tmp_path_factory.mktemp("hf") / f"{request.param}.onnx", dynamo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdkWarning)
        done = onnx_import.read(path, input_shape=(2, T))
    return request.param, path, params, done


def ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (n, T)).astype(np.int64)


def test_every_framework_gives_onnxruntimes_logits(exported):
    name, path, _, done = exported
    x = ids(3, 1)
    session = ort.InferenceSession(str(path))
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    for framework in FRAMEWORKS:
        stack = Stack(framework).build(done.spec)
        stack.set_weights(done.weights)
        got = stack.predict(x)
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=f"{name} on {framework}")


def test_trainable_parameters(exported):
    """Every export keeps every parameter: torch's count exactly (the dynamo exports with a
    free sequence axis keep the whole position table, gathered by the length)."""
    name, _, params, done = exported
    assert done.spec.param_count() == params, name
    assert not done.folded_lookups
    if name == "gpt2-dynamo":  # the output layer stays tied to the token table: one weight
        assert "m_lm_head.weight" in done.weights and sum(v.shape == (VOCAB, 64) for v in done.weights.values()) == 1


@DYNAMO
def test_a_fixed_length_export_reports_the_position_rows_it_folded(tmp_path, capsys):
    """Exported for one length, the dynamo exporter's optimizer folds the lookup of the position
    table into a constant holding the rows of that length; the table is not in the file. The
    import trains those rows, names the constant and says how to keep the table: the rows past
    the exported length are what the count lacks."""
    path, params = export(gpt2, tmp_path / "gpt2.onnx", dynamo=True, free_length=False)
    with pytest.warns(SdkWarning, match=r"embedding_1 \(1, 16, 64\).*export with a free sequence axis"):
        done = onnx_import.read(path)
    assert done.folded_lookups == ("embedding_1",)
    assert list(done.onnx_names.values()).count("embedding_1") == 1
    assert done.spec.param_count() == params - (32 - T) * 64
    capsys.readouterr()  # what the exporter printed
    assert main(["import", str(path), "--out", str(tmp_path / "gpt2.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folded_lookups"] == ["embedding_1"]


def test_three_sgd_steps_lower_the_loss_and_the_weights_serve_everywhere(exported, tmp_path):
    name, _, _, done = exported
    x = ids(8, 2)
    y = np.random.default_rng(3).integers(0, 3, 8) if name.startswith("bert") else np.roll(x, -1, axis=1)
    for framework in FRAMEWORKS:
        stack = Stack(framework).build(done.spec)
        stack.set_weights(done.weights)
        step = stack.train_step("cross_entropy", Optimizer("sgd", lr=0.1))
        losses = [float(step(x, y)) for _ in range(4)]
        assert losses[3] < losses[0], (name, framework, losses)
        saved = tmp_path / f"{framework}.safetensors"
        stack.save(str(saved))
        np.testing.assert_allclose(
            Stack("numpy").load(str(saved)).predict(x), stack.predict(x), rtol=1e-4, atol=1e-4, err_msg=framework
        )


def test_the_import_re_exports_to_what_onnxruntime_ran(exported, tmp_path):
    _, path, _, done = exported
    back = tmp_path / "back.onnx"
    back.write_bytes(to_onnx(done.spec, done.weights).SerializeToString())
    x = ids(2, 4)
    a, b = ort.InferenceSession(str(path)), ort.InferenceSession(str(back))
    want = a.run(None, {a.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(b.run(None, {b.get_inputs()[0].name: x})[0], want, rtol=1e-4, atol=1e-4)


def test_the_sequence_axis_stays_free_where_the_file_leaves_it_free(exported):
    """The dynamo exports have a free length: the import plans for T and runs at other
    lengths with the same weights (ONNX Runtime's logits at those lengths); the TorchScript
    export fixed the length, and another one is refused in one line."""
    name, path, _, done = exported
    if "dynamo" not in name:
        assert done.spec.free_axes == ()
        with pytest.raises(SdkError, match=rf"the model needs \(batch, {T}\)"):
            Stack("numpy").build(done.spec).predict(np.zeros((1, T + 1), np.int64))
        return
    assert done.spec.free_axes == (0,) and done.spec.input_shape == (T,)
    session = ort.InferenceSession(str(path))
    for length in (5, 29):
        x = np.random.default_rng(length).integers(0, VOCAB, (2, length)).astype(np.int64)
        want = session.run(None, {session.get_inputs()[0].name: x})[0]
        scale = max(1.0, float(np.abs(want).max()))
        for framework in FRAMEWORKS:
            stack = Stack(framework).build(done.spec)
            stack.set_weights(done.weights)
            got = stack.predict(x)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=f"{name} {framework} {length}")
