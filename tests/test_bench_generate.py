"""``sdk bench --task generate``: time to the first token, tokens/s and the key/value cache's
memory per stack; a model that is no decoder gets one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sdk_core.plugins.manager import get_manager

SDK = [sys.executable, "-m", "sdk_core"]
pytestmark = pytest.mark.skipif(
    "numpy" not in get_manager().frameworks(), reason="generation is measured on the NumPy reference here"
)


def test_bench_generate_reports_first_token_rate_and_cache_per_stack():
    args = ["bench", "--task", "generate", "--framework", "numpy", "--batch-sizes", "1,3", "--repeats", "2"]
    args += ["--warmup", "0", "--prompt-tokens", "5", "--new-tokens", "7", "--json"]
    done = subprocess.run([*SDK, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"] == "gpt" and [r["batch"] for r in report["stacks"]] == [1, 3]
    for row in report["stacks"]:
        assert row["stack"] == "numpy/cpu:0" and (row["prompt_tokens"], row["new_tokens"]) == (5, 7)
        # the zoo gpt: 2 blocks of 4 heads x 16; float32
        assert row["cache_bytes"] == 2 * 2 * 4 * 16 * (5 + 7) * row["batch"] * 4
        assert 0 < row["time_to_first_token_s"]["median"] < 10 and row["tokens_per_s"]["median"] > 0
        assert row["tokens_per_s"]["n"] == 2
    table = subprocess.run([*SDK, *args[:-1]], capture_output=True, text=True)
    assert table.returncode == 0 and "TTFT ms" in table.stdout and "tokens/s" in table.stdout


def test_bench_generate_refuses_a_model_that_is_no_decoder():
    done = subprocess.run([*SDK, "bench", "--task", "generate", "--model", "mlp"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "is not a decoder" in done.stderr
