"""Hardware evaluation: ``sdk bench`` and the Python API ``sdk_core.bench.run``.

``run(spec, stacks=None, batch_sizes=(1, 8, 32, 128), ...) -> BenchReport`` measures training
throughput, inference latency and throughput, peak memory, energy and FLOP utilisation on one
or every usable (framework, device) pair; :mod:`sdk_core.bench_run` documents the protocol.

This module holds only the CLI. The API names are loaded on first use, so every ``sdk``
command (which registers ``sdk bench``) stays as quick to start as ``sdk devices`` needs.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

_API = {"run": "bench_run", "select_stacks": "bench_run", "make_batch": "bench_run",
        "is_out_of_memory": "bench_run", "BATCH_SIZES": "bench_run",
        "BenchReport": "bench_results", "StackResult": "bench_results",
        "BatchResult": "bench_results", "Phase": "bench_results", "Memory": "bench_results",
        "Energy": "bench_results", "recommend": "bench_results", "format_report": "bench_results",
        "RECOMMEND_SHARE": "bench_results", "UNAVAILABLE": "bench_results",
        "Summary": "bench_stats", "Latency": "bench_stats", "percentile": "bench_stats"}

__all__ = sorted(_API) + ["add_command"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'sdk_core.bench' has no attribute '{name}'")
    return getattr(importlib.import_module(f"sdk_core.{_API[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


# -- CLI ----------------------------------------------------------------------------------------
def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated ints such as 1,8,32 (got '{text}')") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be positive ints such as 1,8,32 (got '{text}')")
    return sizes


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .bench_results import format_report
    from .bench_run import check_settings, run, select_stacks
    from .cli import _spec
    from .errors import SdkError
    from .manager import get_manager

    spec = _spec(args.model, 32)
    check_settings(args.batch_sizes, args.warmup, args.repeats, args.steps, args.min_time)
    if args.plot:  # fail before measuring, not after
        from pathlib import Path

        from .plot import require_matplotlib

        require_matplotlib()
        if not Path(args.plot).resolve().parent.is_dir():
            raise SdkError(f"cannot write the plot '{args.plot}': its directory does not exist")
    manager = get_manager()
    pairs = select_stacks(manager, args.framework, args.device)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run(spec, [(fw.name, dev.id) for fw, dev in pairs], args.batch_sizes,
                 steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                 min_time=args.min_time, seed=args.seed, manager=manager,
                 progress=None if args.json else progress)
    if args.plot:
        from .plot import plot_report

        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report) + (f"\nplot saved to {args.plot}" if args.plot else ""))
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``sdk bench`` on the CLI."""
    p = subparsers.add_parser("bench", help="measure training and inference on the usable stacks",
                              description="measure training throughput, inference latency, memory, "
                              "energy and FLOP utilisation over a sweep of batch sizes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--model", default="mlp", help="mlp (default), lenet5, gpt or a spec .json file")
    p.add_argument("--framework", default="all", help="framework name, or all (default)")
    p.add_argument("--device", default="all", help="device such as cpu or cuda:0, or all (default)")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 8, 32, 128),
                   help="comma-separated batch sizes (default: 1,8,32,128)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    p.add_argument("--steps", type=int, default=None,
                   help="calls per repeat (default: enough for --min-time seconds)")
    p.add_argument("--min-time", type=float, default=0.1,
                   help="seconds per repeat when --steps is not given (default: 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, help="write a PNG plot (needs matplotlib)")
    p.set_defaults(func=cmd_bench)
