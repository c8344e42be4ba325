"""Per-token time of a framework's key/value-cache decode step (``sdk_make_decoder``) against
recomputing the whole sequence (``Stack.predict`` on the context-length input, right-padded:
one compiled forward), greedy, 128 new tokens after a 16-token prompt, batch 1. Cached and
recomputed runs alternate (interleaved pairs); prints medians, min and max, and the ratio.

    python benchmarks/decode_per_token.py [framework=jax] [pairs=15]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from sdk_core import Stack, zoo
from sdk_core.plugins.requests import DecodeRequest

NEW, PROMPT = 128, 16
FW = sys.argv[1] if len(sys.argv) > 1 else "jax"
PAIRS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
spec = zoo.gpt(vocab_size=256, max_len=PROMPT + NEW, dim=128, heads=4, blocks=4)
stack = Stack(FW).build(spec, seed=0)
prompt = np.random.default_rng(0).integers(0, 256, (1, PROMPT))


def cached() -> tuple[float, list[int]]:
    d = stack.manager.make_decoder(DecodeRequest(FW, stack.model, spec, stack.device, 1, PROMPT + NEW))
    logits, tokens = d.prefill(prompt, np.array([PROMPT])), []
    t0 = time.perf_counter()
    for _ in range(NEW - 1):
        token = logits.argmax(-1)
        tokens.append(int(token[0]))
        logits = d.step(token)
    return (time.perf_counter() - t0) / (NEW - 1), tokens


def recompute() -> tuple[float, list[int]]:
    x = np.zeros((1, PROMPT + NEW), np.int64)
    x[0, :PROMPT] = prompt[0]
    logits, tokens = stack.predict(x)[:, PROMPT - 1], []
    t0 = time.perf_counter()
    for t in range(NEW - 1):
        token = int(logits.argmax(-1)[0])
        tokens.append(token)
        x[0, PROMPT + t] = token
        logits = stack.predict(x)[:, PROMPT + t]
    return (time.perf_counter() - t0) / (NEW - 1), tokens


assert cached()[1] == recompute()[1], "cache and recompute pick different tokens"  # and both compile
pairs = [(cached()[0], recompute()[0]) for _ in range(PAIRS)]
c, r, ratio = [p[0] for p in pairs], [p[1] for p in pairs], [b / a for a, b in pairs]
print(f"{FW}: gpt {spec.param_count():,} params, context {PROMPT + NEW}, {PAIRS} interleaved pairs, batch 1")
print(
    f"cached step   ms/token median {1e3 * statistics.median(c):.3f} (min {1e3 * min(c):.3f}, max {1e3 * max(c):.3f})"
)
print(
    f"recompute     ms/token median {1e3 * statistics.median(r):.3f} (min {1e3 * min(r):.3f}, max {1e3 * max(r):.3f})"
)
print(f"ratio recompute/cached median {statistics.median(ratio):.2f}x (min {min(ratio):.2f}, max {max(ratio):.2f})")
