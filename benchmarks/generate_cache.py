"""The key/value cache's gain: greedy tokens/s of ``Stack.generate`` with the cache against
``use_cache=False`` (the whole sequence recomputed every step), 256 new tokens after a
16-token prompt, on a GPT with a 320-token context. Cached and recomputed runs alternate
(interleaved pairs); prints the median tokens/s of each, the spread (min to max) and the
median ratio of the pairs (target: >= 5x). A framework whose plugin does not declare
``generate`` is skipped with a note.

    python benchmarks/generate_cache.py [--frameworks torch,jax] [--pairs 5] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import sdk_core
from sdk_core import Stack, zoo


def tokens_per_s(stack: Stack, prompt: np.ndarray, new: int, use_cache: bool) -> float:
    t0 = time.perf_counter()
    out = stack.generate(prompt, new, temperature=0, use_cache=use_cache)
    seconds = time.perf_counter() - t0
    assert all(len(row) == new for row in out)
    return len(prompt) * new / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frameworks", default="torch,jax")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    spec = zoo.gpt(vocab_size=256, max_len=320, dim=128, heads=4, blocks=4)
    prompt = np.random.default_rng(0).integers(0, 256, (args.batch, 16))
    frameworks = sdk_core.get_manager().frameworks()
    print(
        f"gpt: {spec.param_count():,} parameters, context 320; batch {args.batch}, 16-token prompt, "
        f"{args.new} new tokens, {args.pairs} interleaved pairs"
    )
    print("framework    cached tok/s (min-max)      recompute tok/s (min-max)   ratio (min-max)")
    for name in args.frameworks.split(","):
        info = frameworks.get(name)
        if info is None or not info.installed or "generate" not in info.capabilities:
            print(
                f"{name:<12} skipped: "
                + ("not installed" if info is None or not info.installed else "no generate capability")
            )
            continue
        stack = Stack(name, args.device).build(spec, seed=0)
        expected = stack.generate(prompt, args.new, temperature=0)  # warm-up (and compile, where any)
        again = stack.generate(prompt, args.new, temperature=0, use_cache=False)
        assert all((a == b).all() for a, b in zip(expected, again, strict=True)), "cache and recompute differ"
        cached, recompute = [], []
        for _ in range(args.pairs):
            cached.append(tokens_per_s(stack, prompt, args.new, True))
            recompute.append(tokens_per_s(stack, prompt, args.new, False))
        ratios = [c / r for c, r in zip(cached, recompute, strict=True)]
        print(
            f"{name:<12} {statistics.median(cached):8.1f} ({min(cached):.1f}-{max(cached):.1f})"
            f"    {statistics.median(recompute):8.1f} ({min(recompute):.1f}-{max(recompute):.1f})"
            f"    {statistics.median(ratios):5.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"
        )


if __name__ == "__main__":
    main()
