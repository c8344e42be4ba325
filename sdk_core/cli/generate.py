"""``sdk generate``: text from a decoder's weights file, streamed as the tokens come."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

from ..errors import NotAvailableError, SdkError
from .common import add_command, add_stack_options, counting, emit, stack_from


def _ids(text: str) -> list[int]:
    """``--prompt-ids``: comma-separated token ids."""
    try:
        return [int(word) for word in text.split(",") if word.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated token ids such as 1,2,3 (got '{text}')") from None


def _stack(args: argparse.Namespace, spec: Any) -> Any:
    """The stack the options name; ``auto`` picks the best one that generates."""
    if args.framework != "auto":
        return stack_from(args, spec, task="infer")
    from ..plugins.manager import get_manager
    from ..runtime.select import usable_stacks
    from ..runtime.stack import Stack

    manager = get_manager()
    devices = [manager.device(args.device)] if args.device else None
    pairs = [(fw, dev) for fw, dev in usable_stacks(manager, devices) if "generate" in fw.capabilities]
    if not pairs:
        raise NotAvailableError("no installed framework generates here (install sdk-numpy or sdk-torch)")
    return Stack(pairs[0][0].name, pairs[0][1].id, manager=manager, strict=args.strict)


def generate(args: argparse.Namespace) -> int:
    """``sdk generate``: encode the prompt, generate, print the text as it comes."""
    from ..model.tokenizer import for_model
    from ..model.weights import read_metadata
    from ..runtime.generate import decoder_shape
    from ..runtime.stack import load_spec

    spec = load_spec(args.weights)
    vocab, _ = decoder_shape(spec)  # a model that is not a decoder: before anything is built
    tokenizer = None
    if args.prompt_ids is not None:
        ids = args.prompt_ids
        with contextlib.suppress(SdkError):  # no tokenizer: ids in, ids out
            tokenizer = for_model(read_metadata(args.weights), vocab)
    else:
        tokenizer = for_model(read_metadata(args.weights), vocab)
        ids = tokenizer.encode(args.prompt)
    stack = _stack(args, spec).load(args.weights)
    piece = tokenizer.stream() if tokenizer else lambda i: "" if i is None else f"{i} "
    start = time.perf_counter()
    first: list[float] = []

    def on_token(row: int, token: int) -> None:
        if not first:
            first.append(time.perf_counter() - start)
        if not args.json:
            sys.stdout.write(piece(token))
            sys.stdout.flush()

    new = stack.generate(
        [ids],
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        on_token=on_token,
    )[0]
    seconds = time.perf_counter() - start
    text = tokenizer.decode(new.tolist()) if tokenizer else None
    rate = len(new) / seconds if seconds > 0 else float("inf")
    if not args.json:
        print(piece(None))
        print(
            f"{len(new)} tokens in {seconds:.2f} s ({rate:.1f} tokens/s, first after {first[0] * 1000:.0f} ms) "
            f"on {stack.framework.name}/{stack.device.id}",
            file=sys.stderr,
        )
        return 0
    data = {
        "framework": stack.framework.name,
        "device": stack.device.id,
        "prompt_ids": list(map(int, ids)),
        "ids": new.tolist(),
        "text": text,
        "tokens_per_s": rate,
        "time_to_first_token_s": first[0],
        "seconds": seconds,
    }
    return emit(args, data, "")


def _probability(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got '{text}')") from None


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``generate``."""
    p = add_command(sub, "generate", generate, "generate text from a decoder's weights file (a zoo GPT)")
    add_stack_options(p)
    p.add_argument("--weights", required=True, help="a .safetensors file of a decoder (sdk train --model gpt)")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help='the text to continue, in the weights file\'s tokenizer ("12 13 14")')
    prompt.add_argument("--prompt-ids", type=_ids, help="the prompt as comma-separated token ids (1,2,3)")
    p.add_argument("--max-new-tokens", type=counting(1), default=16, help="tokens to generate (default: 16)")
    p.add_argument(
        "--temperature", type=_probability, default=1.0, help="0 is greedy; higher is more random (default: 1)"
    )
    p.add_argument("--top-k", type=counting(1), default=None, help="draw from the k likeliest tokens only")
    p.add_argument("--top-p", type=_probability, default=None, help="draw from the likeliest tokens reaching p")
