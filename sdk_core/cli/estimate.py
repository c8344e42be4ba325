"""``sdk estimate``: the compute and memory a model needs, from its shapes, for every device."""

from __future__ import annotations

import argparse
from typing import Any

from ..plugins.manager import get_manager
from ..runtime.console import table
from .common import add_command, counting, emit

PEAK_KEYS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp64": "float64"}


def _size(n: Any) -> str:
    from ..model.files import size_text

    return "n/a" if n is None else size_text(n)


def _lower_bound(seconds: Any) -> str:
    return "n/a" if seconds is None else f">= {float(seconds) * 1e3:.3g} ms"


def estimate(args: argparse.Namespace) -> int:
    """``sdk estimate``: parameters, FLOPs, memory part by part, and per device whether it
    fits, the largest batch that does and a lower bound of the time per step."""
    from ..model import estimate as E
    from ..model import zoo

    spec = zoo.resolve(args.model)
    batch, precision, optimizer = args.batch_size, args.precision, args.optimizer
    memory = E.training_memory(spec, batch, precision, optimizer, args.remat)
    plain = E.training_memory(spec, batch, precision, optimizer, False)
    remat = E.training_memory(spec, batch, precision, optimizer, True)
    step_flops = E.training_flops(spec) * batch
    devices = []
    for d in get_manager().devices():
        peak = d.peak_flops.get(PEAK_KEYS[precision])
        devices.append(
            {
                "device": d.id,
                "name": d.name,
                "memory_total": d.memory_total,
                "fits": None if d.memory_total is None else memory["total"] <= d.memory_total,
                "largest_batch": None
                if d.memory_total is None
                else E.largest_batch(spec, d.memory_total, precision, optimizer, args.remat),
                "peak_flops": peak,
                "step_seconds_lower_bound": None if not peak else step_flops / peak,
            }
        )
    data: dict[str, Any] = {
        "model": spec.name or args.model,
        "parameters": spec.param_count(),
        "parameters_with_buffers": spec.param_count(trainable_only=False),
        "flops": {
            "forward_per_sample": E.forward_flops(spec),
            "training_per_sample": E.training_flops(spec),
            "training_per_step": step_flops,
        },
        **memory,
        "without_remat": plain,
        "with_remat": remat,
        "settings": {"batch_size": batch, "precision": precision, "optimizer": optimizer, "remat": args.remat},
        "devices": devices,
    }
    lines = [
        f"{data['model']}: {data['parameters']:,} parameters; {step_flops:.3g} FLOP per training step "
        f"(batch {batch}; {E.forward_flops(spec):.3g} per forward sample)",
        "",
        table(
            [(part, _size(plain[part]), _size(remat[part])) for part in plain],
            ("memory", "without checkpointing", "with checkpointing"),
        ),
        f"({precision}, {optimizer}; using {'with' if args.remat else 'without'} checkpointing below)",
        "",
        table(
            [
                (
                    d["device"],
                    d["name"],
                    _size(d["memory_total"]),
                    "n/a" if d["fits"] is None else ("yes" if d["fits"] else "no"),
                    "n/a" if d["largest_batch"] is None else f"{d['largest_batch']:,}",
                    _lower_bound(d["step_seconds_lower_bound"]),
                )
                for d in devices
            ],
            ("device", "name", "memory", "fits", "largest batch", "step time at peak FLOP/s"),
        ),
        "step time at peak is a lower bound (every FLOP at the device's peak); memory leaves out "
        "framework workspace and allocator slack",
    ]
    return emit(args, data, "\n".join(lines))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``estimate``."""
    from ..model.estimate import PRECISIONS, SLOTS

    p = add_command(sub, "estimate", estimate, "estimate the FLOPs and memory a model needs, per device")
    p.add_argument(
        "--model",
        default="gpt",
        help="a zoo name (mlp, lenet5, gpt, resnet, bert, resnet18, resnet50, gpt2, ..., decoder-70b) or spec .json",
    )
    p.add_argument("--batch-size", type=counting(1), default=32, help="samples per step (default: 32)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="compute precision (default: fp32)")
    p.add_argument("--optimizer", default="adam", choices=tuple(SLOTS), help="optimizer (default: adam)")
    p.add_argument("--remat", action="store_true", help="activation checkpointing of transformer blocks")
