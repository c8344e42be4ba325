"""Generation in ONNX Runtime: the decoder export with past keys and values against the NumPy
reference's predict of the whole sequence, greedy tokens against NumPy's, and `sdk export
--task generate`."""

from __future__ import annotations

import subprocess
import sys

import attrs
import numpy as np
import onnx

from sdk_core import Stack, zoo
from sdk_core.plugins.requests import DecodeRequest

SDK = [sys.executable, "-m", "sdk_core"]


def random_gpt(context: int, seed: int = 0):
    """A small GPT with every weight random (biases and norms too)."""
    spec = zoo.gpt(40, context, 32, 4, 2)
    rng = np.random.default_rng(seed)
    weights = {p.name: (0.3 * rng.standard_normal(p.shape)).astype(np.float32) for p in spec.layout()}
    return spec, weights


def whole_sequence(spec, weights):
    """Last-position logits of the NumPy reference predicting the whole row, no cache."""
    stacks: dict[int, Stack] = {}

    def last(row: np.ndarray) -> np.ndarray:
        if len(row) not in stacks:
            stacks[len(row)] = Stack("numpy").build(attrs.evolve(spec, input_shape=(len(row),)))
            stacks[len(row)].set_weights(weights)
        return stacks[len(row)].predict(row[None])[0, -1]

    return last


def test_decoder_logits_equal_numpy_predict_at_each_step_of_a_left_padded_batch():
    spec, weights = random_gpt(context=32)
    stack = Stack("onnxruntime").build(spec)
    stack.set_weights(weights)
    decoder = stack.manager.make_decoder(DecodeRequest("onnxruntime", stack.model, spec, stack.device, 3, 29))
    rng = np.random.default_rng(1)
    rows = [list(rng.integers(0, 40, n)) for n in (5, 9, 2)]
    ids = np.zeros((3, 9), np.int64)
    for b, row in enumerate(rows):
        ids[b, 9 - len(row) :] = row
    reference = whole_sequence(spec, weights)
    logits = decoder.prefill(ids, np.array([len(r) for r in rows]))
    for step in range(21):
        assert logits.dtype == np.float32 and logits.shape == (3, 40)
        for b, row in enumerate(rows):
            error = np.abs(logits[b] - reference(np.array(row))).max()
            assert error < 1e-4, f"step {step}, row {b}: {error}"
        if step == 20:
            break
        new = rng.integers(0, 40, 3)
        for b in range(3):
            rows[b].append(new[b])
        logits = decoder.step(new)


def test_greedy_tokens_equal_numpy_for_64_new_tokens():
    spec, weights = random_gpt(context=80, seed=2)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7], [1, 8, 2, 8, 1]]
    tokens = {}
    for framework in ("numpy", "onnxruntime"):
        stack = Stack(framework).build(spec)
        stack.set_weights(weights)
        tokens[framework] = stack.generate(prompts, 64, temperature=0)
    for ours, theirs in zip(tokens["onnxruntime"], tokens["numpy"], strict=True):
        assert len(ours) == 64 and np.array_equal(ours, theirs)


def test_sdk_export_task_generate_writes_the_decoder_layout(tmp_path):
    spec, weights = random_gpt(context=32)
    stack = Stack("numpy").build(spec)
    stack.set_weights(weights)
    stack.save(str(tmp_path / "gpt.safetensors"))
    out = tmp_path / "decoder.onnx"
    args = [*SDK, "export", "--task", "generate", "--weights", str(tmp_path / "gpt.safetensors"), "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    graph = onnx.load(str(out)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert dims["input_ids"] == ["batch_size", "sequence_length"]
    assert dims["attention_mask"] == ["batch_size", "total_sequence_length"]
    assert dims["position_ids"] == ["batch_size", "sequence_length"]
    assert dims["past_key_values.1.value"] == ["batch_size", 4, "past_sequence_length", 8]
    outputs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.output}
    assert outputs["logits"] == ["batch_size", "sequence_length", 40]
    assert outputs["present.1.key"] == ["batch_size", 4, "total_sequence_length", 8]
    assert len(graph.input) == 3 + 4 and len(graph.output) == 1 + 4
    lenet = tmp_path / "lenet.safetensors"
    Stack("numpy").build(zoo.get("mlp")).save(str(lenet))
    refused = subprocess.run(
        [*args[:-3], str(lenet), "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "is not a decoder" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x.onnx").exists()
