"""``sdk tune``: batch size, learning rate, optimizer, model scale and a hyperparameter search."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import SdkError
from .common import add_command, add_stack_options, counting, data_for, emit, stack_from

WHAT = ("batch-size", "lr", "optimizer", "scale", "search")
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20}
UNITS |= {"g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def size_bytes(text: str) -> int:
    """``--memory-budget``: ``4GiB``, ``512MiB``, ``2G`` or a number of bytes."""
    found = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", text)
    unit = found[2].lower() if found else ""
    if not found or unit not in UNITS or float(found[1]) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive size such as 4GiB or 512MiB (got '{text}')")
    return int(float(found[1]) * UNITS[unit])


def parts(text: str) -> tuple[str, ...]:
    """``--what``: comma-separated parts of :data:`WHAT`."""
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in WHAT]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown part '{unknown[0] if unknown else text}' (parts: {', '.join(WHAT)})")
    return chosen


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (got '{text}')") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (got {value:g})")
    return value


def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers such as 0.5,1,2 (got '{text}')") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"must be positive numbers such as 0.5,1,2 (got '{text}')")
    return values


def tune(args: argparse.Namespace) -> int:
    """``sdk tune``: run the parts of ``--what`` and report the best settings found."""
    import attrs

    from ..model import zoo
    from ..model.optim import Optimizer
    from ..runtime.console import Progress, require_matplotlib
    from ..runtime.stack import Stack
    from ..tune import batch as B
    from ..tune import compare as C
    from ..tune import lr as L

    if args.plot:
        require_matplotlib()
        if not Path(args.plot).resolve().parent.is_dir():
            raise SdkError(f"cannot write the plot '{args.plot}': its directory does not exist")
    if "search" in args.what:
        from ..tune.search import require_optuna

        require_optuna()  # before any work: say how to install it
    spec = zoo.resolve(args.model)
    if args.task == "generate":
        return _tune_generate(args, spec)
    if spec.param_count() == 0:
        raise SdkError(f"model '{args.model}' has no trainable parameters: there is nothing to tune")
    chosen = stack_from(args, spec)
    chosen.refuse_training()  # every part trains: refuse an inference-only framework first
    framework, device = chosen.framework.name, chosen.device.id
    data = data_for(spec, args.data, args.seed)

    def make_stack(s: Any) -> Stack:
        return Stack(framework, device, manager=chosen.manager).build(s, seed=args.seed)

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    report: dict[str, Any] = {"framework": framework, "device": device, "model": spec.name, "what": list(args.what)}
    best: dict[str, Any] = {
        "lr": args.lr,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "schedule": "cosine",  # every trained run decays its rate along a cosine
        "accuracy": None,
    }
    rule = Optimizer(args.optimizer)
    if "batch-size" in args.what:
        found = B.find_batch_size(make_stack(spec), args.memory_budget, optimizer=rule, seed=args.seed, progress=say)
        report["batch_size"] = found.to_dict()  # the fastest and the largest: the runs below keep --batch-size
    if "lr" in args.what:
        bar = Progress(args.range_steps, "lr range test") if not args.json else None
        test = L.range_test(
            make_stack(spec),
            data[0],
            data[1],
            rule,
            steps=args.range_steps,
            batch_size=best["batch_size"],
            progress=(lambda done, total: bar.update()) if bar else None,
        )
        if bar:
            bar.close(f" suggested lr {test.suggested:.3g} (min/10 {test.min_over_10:.3g})")
        report["lr"] = test.to_dict()
        best["lr"] = test.suggested
    if "optimizer" in args.what:
        runs = C.compare_optimizers(
            make_stack, spec, data, args.epochs, best["batch_size"], seed=args.seed, progress=say
        )
        report["optimizer"] = [r.to_dict() for r in runs]
        winner = max(runs, key=lambda r: r.final)
        best.update(optimizer=winner.name, lr=winner.lr, accuracy=winner.final)
    if "scale" in args.what:
        limit = chosen.device.memory_free or chosen.device.memory_total
        points = C.scale_sweep(
            make_stack,
            spec,
            data,
            args.widths,
            args.depths,
            args.epochs,
            best["batch_size"],
            attrs.evolve(C.OPTIMIZERS.get(best["optimizer"], rule), lr=best["lr"]),
            limit,
            progress=say,
        )
        report["scale"] = {"points": [p.to_dict() for p in points], "pareto": [p.to_dict() for p in C.pareto(points)]}
    if "search" in args.what:
        from ..tune.search import search

        result = search(
            make_stack, spec, data, args.trials, args.budget, args.epochs, args.storage, seed=args.seed, progress=say
        )
        report["search"] = result.to_dict()
        best.update(result.best, accuracy=result.best_accuracy)
    if best["accuracy"] is None:  # confirm the choice: train with it for the same budget
        optimizer = attrs.evolve(C.OPTIMIZERS.get(best["optimizer"], rule), lr=best["lr"])
        run = C.train_run(make_stack(spec), "best", optimizer, data, args.epochs, best["batch_size"], args.seed)
        best["accuracy"] = run.final
    report["best"] = best
    if args.plot:
        from ..tune.plot import plot_tuning

        plot_tuning(report, args.plot)
    lines = [f"tuned {spec.name or 'model'} on {framework}/{device}"]
    if "batch_size" in report:
        b = report["batch_size"]
        error = (
            ""
            if b["estimate_error"] is None
            else f" (the estimate, {b['estimated']:,}, was {b['estimate_error']:+.0%})"
        )
        lines.append(f"batch size: {b['largest']:,} fit in the {b['limit']}{error}; fastest {b['best']:,}")
    if "lr" in report:
        lines.append(
            f"lr range test: suggested {report['lr']['suggested']:.3g}, min/10 {report['lr']['min_over_10']:.3g}"
        )
    for run in report.get("optimizer", []):
        lines.append(f"  {run['name']:<9} lr {run['lr']:<9.3g} accuracy {run['final_accuracy']:.4f}")
    for p in report.get("scale", {}).get("points", []):
        acc = f"accuracy {p['accuracy']:.4f}" if p["trained"] else "too large to train here"
        lines.append(f"  width x{p['width']:g} depth x{p['depth']}: {p['parameters']:,} parameters, {acc}")
    if "search" in report:
        lines.append(f"search: {len(report['search']['trials'])} trials in {report['search']['storage']}")
    lines.append(
        f"best: {best['optimizer']} lr {best['lr']:.3g} (peak of a cosine decay), batch size {best['batch_size']}: "
        f"accuracy {best['accuracy']:.4f} after {args.epochs} epoch(s)"
        + (f"; plot saved to {args.plot}" if args.plot else "")
    )
    return emit(args, report, "\n".join(lines))


def _tune_generate(args: argparse.Namespace, spec: Any) -> int:
    """``sdk tune --what batch-size --task generate``: the largest decode batch that fits."""
    from ..runtime.generate import decoder_shape
    from ..tune.batch import find_decode_batch

    if list(args.what) != ["batch-size"]:
        raise SdkError("--task generate tunes the batch size only: give --what batch-size")
    decoder_shape(spec)  # not a decoder: one line
    stack = stack_from(args, spec, task="infer").build(spec, seed=args.seed)

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    found = find_decode_batch(
        stack, args.prompt_tokens, args.new_tokens, args.memory_budget, seed=args.seed, progress=say
    )
    report = {
        "framework": stack.framework.name,
        "device": stack.device.id,
        "model": spec.name,
        "task": "generate",
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "batch_size": found.to_dict(),
    }
    text = (
        f"largest decode batch in the {found.limit}: {found.largest:,} (estimated {found.estimated:,}); "
        f"fastest: {found.best:,} at {found.best_samples_per_s:,.0f} tokens/s "
        f"({args.prompt_tokens}-token prompts, {args.new_tokens} new tokens)"
    )
    return emit(args, report, text)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tune``."""
    p = add_command(sub, "tune", tune, "find the batch size, learning rate, optimizer and model scale")
    add_stack_options(p)
    p.add_argument("--model", default="lenet5", help="a zoo name or a spec .json file (default: lenet5)")
    p.add_argument("--data", default="auto", help="auto, digits, counting_text, an .npz or a folder of .npy files")
    p.add_argument(
        "--what", type=parts, default=("lr", "optimizer"), help=f"parts to run, comma-separated: {', '.join(WHAT)}"
    )
    p.add_argument("--epochs", type=counting(1), default=3, help="epochs per trained run (default: 3)")
    p.add_argument("--batch-size", type=counting(1), default=32, help="batch size unless batch-size runs (default: 32)")
    p.add_argument("--optimizer", default="adam", help="the optimizer the lr range test sweeps (default: adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="the lr unless lr or optimizer runs (default: 1e-3)")
    p.add_argument("--range-steps", type=counting(3), default=150, help="updates of the lr range test (default: 150)")
    p.add_argument("--memory-budget", type=size_bytes, default=None, help="batch-size on the cpu: e.g. 4GiB")
    p.add_argument("--task", default="train", choices=("train", "generate"), help="generate: the largest decode batch")
    p.add_argument("--prompt-tokens", type=counting(1), default=16, help="--task generate: prompt length")
    p.add_argument("--new-tokens", type=counting(1), default=16, help="--task generate: tokens generated")
    p.add_argument("--widths", type=floats, default=(0.25, 0.5, 1.0, 2.0), help="scale: width multipliers")
    p.add_argument(
        "--depths", type=lambda t: tuple(int(v) for v in floats(t)), default=(1,), help="scale: block repeats"
    )
    p.add_argument("--trials", type=counting(1), default=20, help="search: trials (default: 20)")
    p.add_argument("--budget", type=positive, default=None, help="search: seconds at most")
    p.add_argument("--storage", default="sdk-tune.db", help="search: the Optuna SQLite file (resumed if present)")
    p.add_argument("--plot", default=None, help="write a PNG plot (needs matplotlib)")
