"""``sdk convert --from transformers``: a GPT-2 checkpoint saved by transformers gives the same
logits in every installed framework as transformers itself; bad checkpoints are refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="the GPT-2 reference needs: pip install transformers")
torch = pytest.importorskip("torch", reason="transformers' GPT-2 runs on torch")

from sdk_core import Stack  # noqa: E402
from sdk_core.plugins.manager import get_manager  # noqa: E402

SDK = [sys.executable, "-m", "sdk_core"]
FRAMEWORKS = [n for n in ("numpy", "torch", "jax", "tensorflow", "mindspore") if n in get_manager().frameworks()]


def installed(name: str) -> bool:
    return get_manager().frameworks()[name].version is not None


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small random GPT2LMHeadModel saved as transformers saves it, and its logits."""
    folder = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=64, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random biases and norms too: a misplaced one shows
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)  # safetensors: the only format transformers 5 writes
    ids = np.random.default_rng(0).integers(0, 100, (4, 32))
    with torch.no_grad():
        logits = model(torch.from_numpy(ids)).logits.numpy()
    return folder / "model.safetensors", ids, logits


def convert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SDK, "convert", "--from", "transformers", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    """The checkpoint converted by ``sdk convert``, and its report."""
    out = tmp_path_factory.mktemp("sdk") / "gpt2.safetensors"
    done = convert(str(checkpoint[0]), "--model", "gpt2", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def test_convert_reads_the_sizes_from_the_tensors_and_the_heads_from_config(converted):
    report = converted[1]
    assert (report["vocab"], report["context"], report["dim"], report["heads"], report["blocks"]) == (100, 32, 64, 4, 2)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_converted_gpt2_logits_equal_transformers(checkpoint, converted, framework):
    if not installed(framework):
        pytest.skip(f"{framework} is not installed")
    _, ids, expected = checkpoint
    logits = Stack(framework).load(str(converted[0])).predict(ids)
    assert np.abs(logits - expected).max() < 1e-4


def test_heads_come_from_the_option_or_the_zoo_without_config(checkpoint, tmp_path):
    path, ids, expected = checkpoint
    alone = tmp_path / "model.safetensors"
    alone.write_bytes(path.read_bytes())  # no config.json beside it
    for args in (["--heads", "4"], ["--model", "gpt"]):  # the zoo's small gpt has 4 heads
        out = tmp_path / "out.safetensors"
        done = convert(str(alone), *args, "--out", str(out))
        assert done.returncode == 0, done.stderr
        logits = Stack("numpy").load(str(out)).predict(ids)
        assert np.abs(logits - expected).max() < 1e-4
    gpt2 = convert(str(alone), "--model", "gpt2", "--out", str(tmp_path / "gpt2.safetensors"))
    assert gpt2.returncode == 1 and "12 heads do not divide the width 64" in gpt2.stderr


def test_bad_checkpoints_get_one_line_and_nothing_is_written(checkpoint, tmp_path):
    from safetensors.numpy import load_file, save_file

    path, _, _ = checkpoint
    tensors = load_file(str(path))
    missing = {k: v for k, v in tensors.items() if k != "transformer.h.1.attn.c_attn.bias"}
    wrong = {**tensors, "transformer.h.0.mlp.c_proj.weight": np.zeros((64, 64), np.float32)}
    cases = {
        "text.safetensors": (b"not a safetensors file", "is not a valid safetensors file"),
        "missing.safetensors": (missing, "holds no GPT-2 tensor 'h.1.attn.c_attn.bias'"),
        "wrong.safetensors": (wrong, "tensor 'h.0.mlp.c_proj.weight' has shape (64, 64), expected (256, 64)"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        if isinstance(content, bytes):
            bad.write_bytes(content)
        else:
            save_file(content, str(bad))
        out = tmp_path / f"out-{name}"
        done = convert(str(bad), "--heads", "4", "--out", str(out))
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not out.exists()
    folder = tmp_path / "disagreeing"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(path.read_bytes())
    (folder / "config.json").write_text(json.dumps({"n_layer": 3, "n_head": 4}))
    done = convert(str(folder / "model.safetensors"), "--out", str(tmp_path / "out.safetensors"))
    assert done.returncode == 1 and "says n_layer 3, the tensors 2" in done.stderr
    assert not (tmp_path / "out.safetensors").exists()
