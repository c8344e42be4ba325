"""``sdk bench``: training and inference measurements on the usable stacks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SdkError
from ..plugins.manager import get_manager

if TYPE_CHECKING:
    import numpy as np

    from ..model.spec import ModelSpec
    from ..runtime.stack import Stack


def _batch_sizes(text: str) -> tuple[int, ...]:
    """``--batch-sizes 1,8,32`` as a tuple of positive ints."""
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints such as 1,8,32 (got '{text}')") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be positive ints such as 1,8,32 (got '{text}')")
    return sizes


def _digits(spec: ModelSpec, seed: int) -> tuple[Any, Any]:
    """``(evaluation, calibration)`` from the digits data when the model takes it (the test
    split and 256 training inputs), else ``(None, None)``: no accuracy, random calibration."""
    from .common import digits_for

    try:
        x_train, _, x_test, y_test = digits_for(spec, seed)
    except (SdkError, ImportError):  # another input shape, or no scikit-learn
        return None, None
    return (x_test, y_test), x_train[:256]


def _time_generation(stack: Stack, prompts: np.ndarray, new: int) -> tuple[float, float]:
    """``(seconds to the first token, decode tokens/s after it)`` of one greedy generation."""
    import time

    first: list[float] = []

    def mark(row: int, token: int) -> None:
        if not first:
            first.append(time.perf_counter())

    start = time.perf_counter()
    stack.generate(prompts, new, temperature=0, on_token=mark)
    end = time.perf_counter()
    return first[0] - start, len(prompts) * (new - 1) / (end - first[0]) if new > 1 else float("nan")


def bench_generate(args: argparse.Namespace) -> int:
    """``sdk bench --task generate``: per stack and batch size, the time to the first token,
    decode tokens/s (greedy, every row making ``--new-tokens``) and the cache's memory."""
    import numpy as np

    from ..bench.measure import select_stacks
    from ..bench.stats import Summary
    from ..export.writer import read_model
    from ..model import zoo
    from ..model.estimate import kv_cache_bytes
    from ..runtime.console import table
    from ..runtime.generate import decoder_shape
    from ..runtime.stack import Stack

    if args.weights:
        spec, weights, _ = read_model(args.weights)
    else:
        spec, weights = zoo.resolve(args.model or "gpt"), None
    vocab, context = decoder_shape(spec)
    prompt = args.prompt_tokens if args.prompt_tokens is not None else context // 2
    new = args.new_tokens if args.new_tokens is not None else context - prompt
    if prompt < 1 or new < 1 or prompt + new > context:
        raise SdkError(f"--prompt-tokens {prompt} and --new-tokens {new} must be >= 1 and fit the context of {context}")
    if args.repeats < 1 or args.warmup < 0:
        raise SdkError("--repeats must be >= 1 and --warmup >= 0")
    manager = get_manager()
    rows, report, skipped = [], [], []
    for fw, dev in select_stacks(manager, args.framework, args.device):
        name = f"{fw.name}/{dev.id}"
        if "generate" not in fw.capabilities:
            skipped.append(f"{name}: unsupported: plugin '{fw.plugin}' declares no 'generate' capability")
            continue
        stack = Stack(fw.name, dev.id, manager=manager).build(spec, seed=args.seed)
        if weights is not None:
            stack.set_weights(weights)
        for batch in args.batch_sizes:
            prompts = np.random.default_rng(args.seed).integers(0, vocab, (batch, prompt))
            for _ in range(args.warmup):
                _time_generation(stack, prompts, new)
            ttft, rate = zip(*(_time_generation(stack, prompts, new) for _ in range(args.repeats)), strict=True)
            t, r = Summary.of(list(ttft)), Summary.of(list(rate))
            cache = kv_cache_bytes(spec, prompt + new, batch, {"float32": "fp32", "float64": "fp64"}[stack.dtype])
            rows.append([name, batch, f"{t.median * 1e3:,.2f}", f"{r.median:,.1f}", f"{r.spread:.0%}", f"{cache:,}"])
            row = {"stack": name, "batch": batch, "prompt_tokens": prompt, "new_tokens": new, "cache_bytes": cache}
            report.append({**row, "time_to_first_token_s": t.to_dict(), "tokens_per_s": r.to_dict()})
    if args.json:
        print(json.dumps({"model": spec.name, "stacks": report, "skipped": skipped}, indent=2))
        return 0
    head = f"{spec.name}: greedy generation, {prompt}-token prompts, {new} new tokens; {args.repeats} repeats"
    columns = ("stack", "batch", "TTFT ms", "tokens/s", "spread", "cache bytes")
    print("\n".join([head, "", table(rows, columns), *skipped]))
    return 0


def bench(args: argparse.Namespace) -> int:
    """``sdk bench``: measure every usable stack (or the one named) over a batch sweep."""
    from ..bench.measure import check_settings, run, select_stacks
    from ..bench.plot import plot_report, require_matplotlib
    from ..bench.results import format_report
    from ..model import zoo

    if args.task == "generate":
        return bench_generate(args)
    weights = evaluation = calibration = None
    if args.weights:
        from ..export.writer import read_model
        from ..model.weights import NONFINITE_HINT, check_finite

        spec, weights, _ = read_model(args.weights)
        if not args.allow_nonfinite:  # here, to name the file
            check_finite(weights, f"weights in '{args.weights}'", NONFINITE_HINT)
        evaluation, calibration = _digits(spec, args.seed)
    else:
        spec = zoo.resolve(args.model or "mlp")
    check_settings(args.batch_sizes, args.warmup, args.repeats, args.steps, args.min_time)
    if args.plot:  # fail before measuring, not after
        require_matplotlib()
        if not Path(args.plot).resolve().parent.is_dir():
            raise SdkError(f"cannot write the plot '{args.plot}': its directory does not exist")
    manager = get_manager()
    pairs = select_stacks(manager, args.framework, args.device)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run(
        spec,
        [(fw.name, dev.id) for fw, dev in pairs],
        args.batch_sizes,
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        min_time=args.min_time,
        seed=args.seed,
        manager=manager,
        progress=None if args.json else progress,
        weights=weights,
        allow_nonfinite=args.allow_nonfinite,
        evaluation=evaluation,
        calibration=calibration,
        int8=not args.no_int8,
    )
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report) + (f"\nplot saved to {args.plot}" if args.plot else ""))
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sdk bench``."""
    p = subparsers.add_parser(
        "bench",
        help="measure training and inference on the usable stacks",
        description="measure training throughput, inference latency, memory, "
        "energy and FLOP utilisation over a sweep of batch sizes",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--model",
        default=None,
        help="a zoo name (default: mlp, or gpt for --task generate; lenet5, gpt, resnet, bert, ...) or a spec .json",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="run this saved model (.safetensors or .sdkz) instead of --model; reports its digits accuracy per stack",
    )
    p.add_argument(
        "--allow-nonfinite", action="store_true", help="load weights that hold NaN or infinity (refused by default)"
    )
    p.add_argument("--no-int8", action="store_true", help="skip the int8 model of frameworks that make one")
    p.add_argument("--framework", default="all", help="framework names (comma-separated), or all (default)")
    p.add_argument("--device", default="all", help="device such as cpu or cuda:0, or all (default)")
    p.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=(1, 8, 32, 128),
        help="comma-separated batch sizes (default: 1,8,32,128)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    p.add_argument("--steps", type=int, default=None, help="calls per repeat (default: enough for --min-time seconds)")
    p.add_argument(
        "--min-time", type=float, default=0.1, help="seconds per repeat when --steps is not given (default: 0.1)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--task",
        default="predict",
        choices=("predict", "generate"),
        help="predict: training and inference (default); generate: time to first token, tokens/s and "
        "the key/value cache of a decoder (--model gpt by default)",
    )
    p.add_argument(
        "--prompt-tokens", type=int, default=None, help="generate: prompt length (default: half the context)"
    )
    p.add_argument(
        "--new-tokens", type=int, default=None, help="generate: new tokens (default: the rest of the context)"
    )
    p.add_argument("--plot", default=None, help="write a PNG plot (needs matplotlib)")
    p.set_defaults(func=bench)
