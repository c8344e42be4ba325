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
    from ..model.spec import ModelSpec


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


def bench(args: argparse.Namespace) -> int:
    """``sdk bench``: measure every usable stack (or the one named) over a batch sweep."""
    from ..bench.measure import check_settings, run, select_stacks
    from ..bench.plot import plot_report, require_matplotlib
    from ..bench.results import format_report
    from ..model import zoo

    weights = evaluation = calibration = None
    if args.weights:
        from ..export.writer import read_model
        from ..model.weights import NONFINITE_HINT, check_finite

        spec, weights, _ = read_model(args.weights)
        if not args.allow_nonfinite:  # here, to name the file
            check_finite(weights, f"weights in '{args.weights}'", NONFINITE_HINT)
        evaluation, calibration = _digits(spec, args.seed)
    else:
        spec = zoo.resolve(args.model)
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
        default="mlp",
        help="a zoo name (mlp (default), lenet5, gpt, resnet, bert, resnet18, resnet50, ...) or a spec .json file",
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
    p.add_argument("--plot", default=None, help="write a PNG plot (needs matplotlib)")
    p.set_defaults(func=bench)
