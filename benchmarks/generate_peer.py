"""transformers' ``GPT2LMHeadModel.generate`` against ``Stack("torch").generate`` on the same
weights, CPU.

A ``GPT2Config`` (default 4 blocks of width 256, 4 heads, context 256, GPT-2's vocabulary of
50,257) is initialised by transformers from a fixed torch seed (biases and norms made random
too), saved with ``save_pretrained`` and converted by ``sdk_core.model.convert.convert_file``
(what ``sdk convert --from transformers`` runs); the SDK loads the converted file. Both decode
greedily with their key/value cache (``use_cache=True``) from the same random prompts, every
row making ``--new`` tokens (no stop token). First the tokens are compared; then interleaved
pairs, alternating which side goes first, the first pair (warm-up) not counted. Prints each
side's seconds per ``generate`` and the pair ratio SDK/transformers (goal: <= 1.0) as the
median with the lowest and highest over the pairs. Other SDK frameworks that declare
``generate`` (``--also jax,onnxruntime``) are timed in the same pairs and reported beside it.

transformers is an optional benchmark dependency (``pip install 'transformers>=5'``).

    python benchmarks/generate_peer.py [--batches 1,8] [--prompt 64] [--new 128] [--pairs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def hf_model(layers: int, dim: int, heads: int, vocab: int, context: int, folder: Path):
    import torch
    import transformers

    config = transformers.GPT2Config(
        n_layer=layers, n_embd=dim, n_head=heads, vocab_size=vocab, n_positions=context, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.generation_config.eos_token_id = None  # every row makes all its tokens
    model.generation_config.pad_token_id = 0
    model.save_pretrained(folder)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--also", default="jax,onnxruntime", help="other SDK frameworks to time beside torch")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("generate_peer.py needs transformers: pip install 'transformers>=5'")

    from sdk_core import Stack
    from sdk_core.model.convert import convert_file
    from sdk_core.plugins.manager import get_manager

    context = args.prompt + args.new
    folder = Path(tempfile.mkdtemp())
    peer = hf_model(args.layers, args.dim, args.heads, args.vocab, context, folder)
    convert_file(folder / "model.safetensors", folder / "sdk.safetensors", model="gpt2")
    infos = get_manager().frameworks()
    names = ["torch"] + [
        n for n in args.also.split(",") if n in infos and infos[n].version and "generate" in infos[n].capabilities
    ]
    stacks = {n: Stack(n).load(str(folder / "sdk.safetensors")) for n in names}
    print(
        f"GPT-2 config: {args.layers} blocks, width {args.dim}, {args.heads} heads, vocabulary {args.vocab}; "
        f"{args.prompt}-token prompts, {args.new} new tokens, greedy; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.pairs} pairs after one warm-up pair"
    )

    for batch in (int(b) for b in args.batches.split(",")):
        prompts = np.random.default_rng(batch).integers(0, args.vocab, (batch, args.prompt))
        ids = torch.from_numpy(prompts)

        def run_peer() -> np.ndarray:
            with torch.no_grad():
                out = peer.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=args.new,
                    min_new_tokens=args.new,
                    do_sample=False,
                    use_cache=True,
                )
            return out[:, args.prompt :].numpy()

        def run_sdk(name: str) -> np.ndarray:
            return np.stack(stacks[name].generate(prompts, args.new, temperature=0))

        reference = run_peer()
        for name in names:
            same = (run_sdk(name) == reference).all(axis=0)
            agree = int(np.argmin(same)) if not same.all() else args.new
            print(f"batch {batch}: {name} greedy tokens equal transformers' for the first {agree} of {args.new}")
        times: dict[str, list[float]] = {"transformers": [], **{n: [] for n in names}}
        for pair in range(args.pairs + 1):
            order = ["transformers", *names] if pair % 2 else [*names, "transformers"]
            for side in order:
                start = time.perf_counter()
                run_peer() if side == "transformers" else run_sdk(side)
                if pair:
                    times[side].append(time.perf_counter() - start)
        peer_s = times["transformers"]
        print(f"batch {batch}: transformers {statistics.median(peer_s):.3f} s per generate")
        for name in names:
            ratios = [s / p for s, p in zip(times[name], peer_s, strict=True)]
            print(
                f"batch {batch}: sdk {name} {statistics.median(times[name]):.3f} s, "
                f"ratio SDK/transformers {statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f}), "
                f"{batch * args.new / statistics.median(times[name]):,.0f} tokens/s "
                f"(transformers {batch * args.new / statistics.median(peer_s):,.0f})"
            )


if __name__ == "__main__":
    main()
