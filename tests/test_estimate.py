"""`sdk estimate` and the memory estimate, part by part."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sdk_core import SdkError, zoo
from sdk_core.model import estimate as E

SDK = [sys.executable, "-m", "sdk_core"]


def test_parts_follow_precision_optimizer_and_checkpointing():
    spec = zoo.gpt(blocks=4)
    n = spec.param_count()
    fp32 = E.training_memory(spec, 8, "fp32", "adam")
    assert fp32["weights"] == 4 * n and fp32["gradients"] == 4 * n and fp32["optimizer"] == 8 * n
    assert fp32["total"] == sum(v for k, v in fp32.items() if k != "total")
    assert E.training_memory(spec, 8, "fp32", "sgd")["optimizer"] == 0
    assert E.training_memory(spec, 8, "fp32", "momentum")["optimizer"] == 4 * n
    bf16 = E.training_memory(spec, 8, "bf16", "adam")
    assert bf16["activations"] * 2 == fp32["activations"] and bf16["weights"] == 6 * n
    remat = E.training_memory(spec, 8, "fp32", "adam", remat=True)
    assert remat["activations"] < fp32["activations"] / 2
    assert E.training_memory(spec, 16)["activations"] == 2 * fp32["activations"]
    with pytest.raises(SdkError, match="'precision' must be one of"):
        E.training_memory(spec, 8, "int3")


def test_largest_batch_is_the_last_that_fits():
    spec = zoo.lenet5()
    memory = E.training_memory(spec, 100)["total"]
    assert E.largest_batch(spec, memory) == 100
    assert E.largest_batch(spec, memory - 1) == 99
    assert E.largest_batch(spec, 10) == 0


def test_large_shapes_have_their_published_sizes():
    # GPT-2 small is 124M with tied embeddings; the untied output layer adds 50257 x 768 + 50257
    assert zoo.get("gpt2").param_count() == pytest.approx(124.4e6 + 50257 * 769, rel=0.01)
    assert zoo.get("gpt2-xl").param_count() == pytest.approx(1.56e9 + 50257 * 1601, rel=0.02)
    assert 6.5e9 < zoo.get("decoder-7b").param_count() < 7e9
    assert 60e9 < zoo.get("decoder-70b").param_count() < 70e9
    assert "gpt2" not in zoo.ZOO  # estimates only: never built by the tests that build the zoo


def test_transformer_flops_are_six_n_per_token_plus_attention():
    spec = zoo.get("gpt2")
    t, d, blocks = 1024, 768, 12
    block_params = 12 * d * d
    attention = 2 * 2 * t * t * d * blocks
    expected = 2 * t * (block_params * blocks + d * 50257) + attention
    assert E.forward_flops(spec) == pytest.approx(expected, rel=1e-3)
    assert E.training_flops(spec) == 3 * E.forward_flops(spec)


def test_sdk_estimate_reports_every_part_and_device():
    out = subprocess.run(
        SDK + ["estimate", "--model", "decoder-70b", "--precision", "bf16", "--batch-size", "4", "--remat", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("parameters", "flops", "weights", "gradients", "optimizer", "activations", "total"):
        assert key in data
    assert data["with_remat"]["activations"] < data["without_remat"]["activations"]
    cpu = next(d for d in data["devices"] if d["device"].startswith("cpu"))
    assert cpu["fits"] is False and cpu["largest_batch"] == 0
    text = subprocess.run(SDK + ["estimate", "--model", "lenet5"], capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "activations" in text.stdout and "lower bound" in text.stdout
    bad = subprocess.run(SDK + ["estimate", "--model", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown model 'nope'" in bad.stderr
