"""`sdk estimate` per device: ZeRO sharding and tensor parallelism, and the KV cache of generation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sdk_core import SdkError, zoo
from sdk_core.model import estimate as E

SDK = [sys.executable, "-m", "sdk_core"]


def sdk(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(SDK + ["estimate", *words], capture_output=True, text=True, timeout=120)


def states(parts: dict[str, int]) -> int:
    return parts["weights"] + parts["gradients"] + parts["optimizer_state"]


@pytest.mark.parametrize("n", [8, 64])
def test_zero_stages_are_the_papers_formulas_for_mixed_precision_adam(n):
    spec = zoo.get("decoder-7b")
    psi = spec.param_count()
    assert psi == spec.param_count(trainable_only=False) and psi % n == 0  # the formulas come out whole

    def parts(strategy, world=n, precision="bf16", optimizer="adam"):
        return E.sharded_memory(spec, 64, world, strategy, precision=precision, optimizer=optimizer)

    assert states(parts("ddp")) == 16 * psi
    assert states(parts("zero1")) == 4 * psi + 12 * psi // n
    assert states(parts("zero2")) == 2 * psi + 14 * psi // n
    assert states(parts("zero3")) == 16 * psi // n
    assert parts("zero2")["optimizer_state"] == 12 * psi // n and parts("zero2")["weights"] == 2 * psi
    # fp32: no master copy (4 + 4 + 4 per slot); one device of any stage is plain data parallelism
    assert states(parts("zero1", precision="fp32")) == 8 * psi + 8 * psi // n
    assert states(parts("zero3", world=1, optimizer="sgd")) == 8 * psi
    # the gathered-layer buffer: stage 3 only, the largest layer (a block) twice in bf16 (prefetch)
    block = 12 * 4096**2 + 13 * 4096
    assert parts("zero3")["gathered_layer_buffer"] == 2 * 2 * block
    assert parts("zero2")["gathered_layer_buffer"] == 0
    # activations are those of the local batch: 64 / n samples
    assert parts("zero3")["activations"] == E.training_memory(spec, 64 // n, "bf16")["activations"]
    total = parts("zero3")
    assert total["total"] == sum(v for k, v in total.items() if k != "total")


def test_unsharded_gradients_and_communication_buffers_follow_the_strategy():
    spec = zoo.get("decoder-7b")
    psi, block = spec.param_count(), 12 * 4096**2 + 13 * 4096  # a block is the largest layer

    def parts(strategy, world=8, precision="bf16"):
        return E.sharded_memory(spec, 64, world, strategy, precision=precision, optimizer="adam")

    for world in (8, 64):
        # ddp and zero1 all-reduce whole gradients: one bucketed copy of them (2 bytes each in bf16)
        for strategy in ("ddp", "zero1"):
            assert parts(strategy, world)["unsharded_gradients"] == 0
            assert parts(strategy, world)["communication_buffers"] == 2 * psi
        # zero2 and zero3 reduce-scatter one layer at a time: its whole gradient, the reduce-scatter's
        # input (a copy of it) and the all-gather's output (its weights), whatever the world
        for strategy in ("zero2", "zero3"):
            assert parts(strategy, world)["unsharded_gradients"] == 2 * block
            assert parts(strategy, world)["communication_buffers"] == (2 + 2) * block
    assert parts("zero3", precision="fp32")["unsharded_gradients"] == 4 * block
    # one data-parallel device communicates nothing
    for strategy in E.STRATEGIES:
        one = parts(strategy, world=1)
        assert one["unsharded_gradients"] == one["communication_buffers"] == 0
    # the new parts add to the total; ZeRO's three states stay the paper's
    z2 = parts("zero2")
    assert states(z2) == 2 * psi + 14 * psi // 8
    assert z2["total"] == states(z2) + z2["unsharded_gradients"] + z2["communication_buffers"] + z2["activations"]
    # under tensor parallelism the layer is this device's slice of it (gpt2: the embedding is largest)
    gpt2 = zoo.get("gpt2")
    tp = E.sharded_memory(gpt2, 8, 8, "zero3", tensor_parallel=2, precision="bf16")
    assert tp["unsharded_gradients"] == 2 * -(-(50257 + 1024) * 768 // 2)


def test_tensor_parallelism_splits_the_layers_and_their_activations():
    spec = zoo.get("gpt2")
    d, vocab, context, blocks = 768, 50257, 1024, 12
    block = 12 * d * d + 13 * d
    split = (vocab + context) * d + blocks * block + d * vocab + vocab  # embedding, blocks, output layer
    assert split + 2 * d == spec.param_count()  # the final norm is replicated
    tp = E.sharded_memory(spec, 8, 4, "ddp", tensor_parallel=2, precision="fp32", optimizer="sgd")
    assert tp["weights"] == 4 * (-(-split // 2) + 2 * d) and tp["gradients"] == tp["weights"]
    one = E.sharded_memory(spec, 4, 1, "ddp", precision="fp32", optimizer="sgd")
    assert one["activations"] / 2 < tp["activations"] < one["activations"]  # same local batch of 4
    z3 = E.sharded_memory(spec, 8, 8, "zero3", tensor_parallel=2, precision="bf16")
    assert z3["gathered_layer_buffer"] == 2 * 2 * -(-(vocab + context) * d // 2)  # the embedding is largest
    assert E.sharded_memory(spec, 8, 8, "zero3", tensor_parallel=1)["activations"] > z3["activations"]


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        ("gpt2", {"world": 0, "strategy": "zero1"}, "'world' must be an int >= 1 (got 0)"),
        ("gpt2", {"world": 8, "strategy": "zero4"}, "'strategy' must be one of ddp, zero1, zero2, zero3"),
        ("gpt2", {"world": 8, "strategy": "zero1", "tensor_parallel": 3}, "'tensor_parallel' 3 does not divide"),
        ("decoder-7b", {"world": 12, "strategy": "zero1", "tensor_parallel": 3}, "layer 1 (transformer_block)"),
    ],
)
def test_bad_sharding_gives_one_clear_error(model, kwargs, message):
    with pytest.raises(SdkError) as info:
        E.sharded_memory(zoo.get(model), 8, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "words, message",
    [
        (["--world", "0", "--strategy", "zero3"], "--world: must be an int >= 1 (got 0)"),
        (["--world", "8", "--strategy", "zero4"], "invalid choice: 'zero4'"),
        (["--world", "8", "--strategy", "zero1", "--tensor-parallel", "3"], "'tensor_parallel' 3 does not divide"),
        (["--model", "decoder-7b", "--world", "10", "--strategy", "zero1", "--tensor-parallel", "5"], "heads"),
        (["--task", "generate", "--model", "bert", "--prompt-len", "8", "--new-tokens", "8"], "not a decoder"),
        (["--task", "generate", "--model", "mlp", "--prompt-len", "8", "--new-tokens", "8"], "not a decoder"),
        (["--task", "generate", "--model", "gpt2", "--prompt-len", "1000", "--new-tokens", "25"], "context length"),
        (["--task", "generate", "--model", "gpt2"], "--prompt-len"),
    ],
)
def test_sdk_estimate_refuses_bad_input_in_one_line(words, message):
    out = sdk(*words)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_largest_zoo_decoder_that_fits_a_device():
    spec = zoo.get("gpt2-xl")
    memory = E.sharded_memory(spec, 8, 8, "zero3", precision="bf16")["total"]
    assert E.largest_fitting(memory, 8, 8, "zero3", precision="bf16") == "gpt2-xl"
    assert E.largest_fitting(memory - 1, 8, 8, "zero3", precision="bf16") == "gpt2-large"
    assert E.largest_fitting(10**6, 8, 8, "zero3", precision="bf16") is None
    # tensor parallel 8 leaves out the decoders whose heads it does not divide: gpt2-large (20 heads,
    # which fits at tensor parallel 4) and gpt2-xl (25); gpt2-medium (16) is the largest candidate
    assert E.sharded_memory(zoo.get("gpt2-large"), 8, 8, "zero3", 4, "bf16")["total"] < memory
    assert E.largest_fitting(memory, 8, 8, "zero3", tensor_parallel=8, precision="bf16") == "gpt2-medium"


def test_sdk_estimate_sharded_json_matches_the_functions_and_imports_no_framework():
    code = """
import contextlib, io, json, sys, sdk_core.cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = sdk_core.cli.main(["estimate", "--model", "decoder-7b", "--world", "8", "--strategy", "zero3",
                              "--precision", "bf16", "--json"])
print(json.dumps({"code": code, "data": json.loads(out.getvalue()),
                  "loaded": sorted(set(sys.modules) & {"torch", "tensorflow", "jax", "mindspore"})}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["code"] == 0 and result["loaded"] == []
    data = result["data"]
    expected = E.sharded_memory(zoo.get("decoder-7b"), 32, 8, "zero3", precision="bf16")
    assert expected["unsharded_gradients"] > 0 and expected["communication_buffers"] > 0
    for key in expected:
        assert data[key] == expected[key]
    assert data["sharding"] == {
        "world": 8,
        "strategy": "zero3",
        "tensor_parallel": 1,
        "data_parallel": 8,
        "local_batch": 4,
        "global_batch": 32,
    }
    cpu = next(k for k in data["largest_model"] if k["device_kind"] == "cpu")
    assert set(cpu["largest_model"]) == {"1", "8", "64", "512"}
    memory = cpu["memory_total"]
    assert cpu["largest_model"]["8"] == E.largest_fitting(memory, 32, 8, "zero3", precision="bf16")
    assert next(d for d in data["devices"] if d["device"] == "cpu:0")["fits"] == (expected["total"] <= memory)
    text = sdk("--model", "decoder-7b", "--world", "8", "--strategy", "zero3", "--precision", "bf16")
    assert text.returncode == 0, text.stderr
    rows = ("optimizer state", "gathered layer buffer", "unsharded gradients", "communication buffers")
    for row in (*rows, "512 devices", "zero3 over 8 devices"):
        assert row in text.stdout


def test_kv_cache_is_two_layers_width_context_batch_bytes():
    assert E.kv_cache_bytes(zoo.get("gpt2"), 1024, 1, "fp32") == 2 * 12 * 768 * 1024 * 4 == 75_497_472
    assert E.kv_cache_bytes(zoo.get("gpt"), 32, 3, "bf16") == 2 * 2 * 64 * 32 * 3 * 2
    parts = E.generation_memory(zoo.get("gpt2"), 1000, 24, 1, "fp32")
    assert parts["kv_cache"] == 75_497_472 and parts["weights"] == 4 * zoo.get("gpt2").param_count()
    assert parts["total"] == parts["kv_cache"] + parts["weights"] + parts["activations"]
    with pytest.raises(SdkError, match="is not a decoder"):
        E.kv_cache_bytes(zoo.get("bert"), 8, 1)


def test_longest_context_that_fits_a_memory():
    spec = zoo.get("gpt2")
    memory = E.generation_memory(spec, 150, 50, 4, "bf16")["total"]
    assert E.longest_context(spec, memory, 4, "bf16") == 200
    assert E.longest_context(spec, memory - 1, 4, "bf16") == 199
    assert E.longest_context(spec, 10**12, 4, "bf16") == 1024  # capped at the model's context length
    assert E.longest_context(spec, 1000, 4, "bf16") == 0


def test_sdk_estimate_generate_prints_cache_weights_and_longest_context():
    words = ["--task", "generate", "--model", "gpt2", "--prompt-len", "1000", "--new-tokens", "24"]
    out = sdk(*words, "--batch-size", "1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["kv_cache"] == 75_497_472 and data["context_length"] == 1024
    assert data["total"] == E.generation_memory(zoo.get("gpt2"), 1000, 24, 1, "fp32")["total"]
    cpu = next(d for d in data["devices"] if d["device"] == "cpu:0")
    assert cpu["fits"] is True and cpu["longest_context"] == 1024 and cpu["full_context"] is True
    text = sdk(*words)
    assert text.returncode == 0 and "KV cache" in text.stdout and "full context" in text.stdout
