"""``sdk compress``: prune, share or quantize a trained model and write a ``.sdkz`` file."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import SdkError
from .common import add_command, add_stack_options, counting, digits_for, emit, stack_from


def _mapping(text: str, what: str) -> dict[str, float]:
    """``conv=0.6,7=0.95`` as a mapping of layer keys to numbers."""
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise SdkError(f"{what} reads key=value,... with layer indices or types as keys (got {text!r})") from None
    return out


def compress(args: argparse.Namespace) -> int:
    """``sdk compress``: the Deep-Compression pipeline on the digits data, with a report."""
    from ..compress import Schedule
    from ..compress import compress as run
    from ..compress.plot import plot_compression
    from ..compress.sharing import parse_bits
    from ..model.files import check_output
    from ..runtime.console import require_matplotlib, table
    from ..runtime.stack import load_spec

    for path in filter(None, (args.out, args.plot)):  # before any work, never onto an input
        check_output(path, reads=[args.weights], what="output")
    if args.out == args.plot:
        raise SdkError("--out and --plot name the same file")
    if args.plot:
        require_matplotlib()
    if args.quantize and args.share_bits:
        raise SdkError("choose --share-bits or --quantize, not both")
    schedule = Schedule.parse(args.prune_schedule) if args.prune_schedule else None
    amount = schedule.final if schedule else args.prune
    share: Any = False if args.no_share or args.quantize else (parse_bits(args.share_bits) if args.share_bits else None)
    spec = load_spec(args.weights)
    stack = stack_from(args, spec).load(args.weights, allow_nonfinite=args.allow_nonfinite)
    data = digits_for(spec, args.seed)
    log = None if args.json else (lambda text: print(text, file=sys.stderr))
    report = run(
        stack,
        data,
        args.out,
        amount=amount,
        schedule=schedule,
        scope=args.prune_scope,
        ratios=_mapping(args.prune_ratios, "--prune-ratios") if args.prune_ratios else None,
        keep=[k.strip() for k in args.keep.split(",")] if args.keep else (),
        structured=args.structured,
        share_bits=share,
        quantize_to=args.quantize,
        calibration=args.calibration,
        finetune_epochs=args.finetune_epochs,
        reference_bytes=os.path.getsize(args.weights),
        log=log,
    )
    before, after = report.pop("_weights")
    if args.plot:
        plot_compression(report, before, after, args.plot)
        report["plot"] = args.plot
    rows = [
        (r["name"], r["layer"], f"{r['params']:,}", f"{r['nonzeros']:,}", r["bits"], f"{r['bytes']:,}")
        for r in report["layers"]
    ]
    coders = ", ".join(f"{k} {v:,}" for k, v in report["coders"].items())
    text = [
        table(rows, ("tensor", "layer", "params", "nonzeros", "bits", "bytes")),
        f"{report['bytes_before']:,} bytes → {report['bytes_after']:,} bytes: ×{report['compression_ratio']:.1f} "
        f"(header {report['header_bytes']:,}; index and value streams packed/Huffman/zstd: {coders}; "
        "the smallest of each is stored)",
        f"sparsity {report['sparsity']:.3f}; accuracy {report['accuracy_before']:.4f} before, "
        f"{report['accuracy_after']:.4f} after (digits test split, read back from {args.out})",
    ]
    if "structured" in report:
        s = report["structured"]
        ratio = s["latency_ratio"]
        text.append(
            f"structured: {s['params_before']:,} → {s['params_after']:,} parameters; inference time "
            f"×{ratio['median']:.2f} (min {ratio['min']:.2f}, max {ratio['max']:.2f}) of the original"
        )
    if report["sparsity"]:
        text.append("unstructured sparsity shrinks the file; dense kernels run no faster on it")
    if args.plot:
        text.append(f"plot saved to {args.plot}")
    return emit(args, report, "\n".join(text))


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1) (got '{text}')") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1) (got {value})")
    return value


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``compress``."""
    from ..compress.pipeline import DEFAULT_EPOCHS, DEFAULT_PRUNE

    p = add_command(sub, "compress", compress, "prune, weight-share or quantize a model into a .sdkz file")
    add_stack_options(p)
    p.add_argument("--weights", required=True, help="a trained .safetensors (or .sdkz) file")
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="load weights that hold NaN or infinity (refused by default; the compressed file cannot hold them)",
    )
    p.add_argument("--out", required=True, help="the compressed .sdkz file to write")
    p.add_argument(
        "--prune", type=ratio, default=DEFAULT_PRUNE, help=f"share of weights pruned (default {DEFAULT_PRUNE})"
    )
    p.add_argument("--prune-schedule", default=None, help="gradual pruning: final[:steps[:initial[:power]]]")
    p.add_argument("--prune-scope", default="global", choices=("global", "layer"), help="one threshold or per layer")
    p.add_argument("--prune-ratios", default=None, help="per-layer ratios, e.g. conv=0.6,7=0.95")
    p.add_argument("--keep", default=None, help="layers left unpruned, e.g. 0 or conv")
    p.add_argument("--structured", type=ratio, default=None, help="remove this share of channels and units first")
    p.add_argument("--share-bits", default=None, help="weight-sharing bits, e.g. conv=8,dense=5 (the default)")
    p.add_argument("--no-share", action="store_true", help="no weight sharing")
    p.add_argument("--quantize", default=None, choices=("int8",), help="int8 post-training quantization")
    p.add_argument("--calibration", default="minmax", choices=("minmax", "percentile"), help="activation ranges")
    p.add_argument(
        "--finetune-epochs", type=counting(0), default=DEFAULT_EPOCHS, help=f"default {DEFAULT_EPOCHS}; 0: one shot"
    )
    p.add_argument("--plot", default=None, help="save a PNG of the weights, sparsity and bits per layer")
