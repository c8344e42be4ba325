"""``sdk estimate``: the compute and memory a model needs, from its shapes, for every device."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import SdkError
from ..plugins.manager import get_manager
from ..runtime.console import table
from .common import add_command, counting, emit

PEAK_KEYS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp64": "float64"}


def _size(n: Any) -> str:
    from ..model.files import size_text

    return "n/a" if n is None else size_text(n)


def _lower_bound(seconds: Any) -> str:
    return "n/a" if seconds is None else f">= {float(seconds) * 1e3:.3g} ms"


def _yes(fits: bool | None) -> str:
    return "n/a" if fits is None else ("yes" if fits else "no")


def estimate(args: argparse.Namespace) -> int:
    """``sdk estimate``: parameters, FLOPs, memory part by part, and per device whether it
    fits, the largest batch that does and a lower bound of the time per step; with
    ``--world``/``--strategy``/``--tensor-parallel`` all of it per device of a sharded run,
    and with ``--task generate`` the memory of generation instead."""
    from ..model import estimate as E
    from ..model import zoo

    spec = zoo.resolve(args.model)
    sharded = (args.world, args.strategy, args.tensor_parallel) != (None, None, None)
    if args.task == "generate":
        if sharded:
            raise SdkError("--world, --strategy and --tensor-parallel apply to --task train")
        return generate(args, spec)
    if (args.prompt_len, args.new_tokens) != (None, None):
        raise SdkError("--prompt-len and --new-tokens apply to --task generate")
    batch, precision, optimizer = args.batch_size, args.precision, args.optimizer
    step_flops = E.training_flops(spec) * batch
    world, strategy, tp = args.world or 1, args.strategy or "ddp", args.tensor_parallel or 1
    if sharded:

        def parts(remat: bool) -> dict[str, int]:
            return E.sharded_memory(spec, batch, world, strategy, tp, precision, optimizer, remat)

        def largest(memory: int) -> int:
            return E.largest_sharded_batch(spec, memory, world, strategy, tp, precision, optimizer, args.remat)

        dp = world // tp
        local = -(-batch // dp)
        device_flops = E.training_flops(spec) * local / tp
    else:

        def parts(remat: bool) -> dict[str, int]:
            return E.training_memory(spec, batch, precision, optimizer, remat)

        def largest(memory: int) -> int:
            return E.largest_batch(spec, memory, precision, optimizer, args.remat)

        device_flops = step_flops
    plain, remat = parts(False), parts(True)
    memory = remat if args.remat else plain
    probed = get_manager().devices()
    devices: list[dict[str, Any]] = []
    for d in probed:
        peak = d.peak_flops.get(PEAK_KEYS[precision])
        devices.append(
            {
                "device": d.id,
                "name": d.name,
                "memory_total": d.memory_total,
                "fits": None if d.memory_total is None else memory["total"] <= d.memory_total,
                "largest_batch": None if d.memory_total is None else largest(d.memory_total),
                "peak_flops": peak,
                "step_seconds_lower_bound": None if not peak else device_flops / peak,
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
    using = f"using {'with' if args.remat else 'without'} checkpointing below"
    setting = f"({precision}, {optimizer}; {using})"
    if sharded:
        data["sharding"] = {
            "world": world,
            "strategy": strategy,
            "tensor_parallel": tp,
            "data_parallel": dp,
            "local_batch": local,
            "global_batch": batch,
        }
        setting = (
            f"({precision}, {optimizer}; {strategy} over {world} devices: data parallel {dp} x tensor parallel "
            f"{tp}, {local} samples per device of a global batch of {batch}; {using})"
        )
        data["largest_model"] = _largest_models(probed, batch, strategy, tp, precision, optimizer, args.remat)
    lines = [
        f"{data['model']}: {data['parameters']:,} parameters; {step_flops:.3g} FLOP per training step "
        f"(batch {batch}; {E.forward_flops(spec):.3g} per forward sample)",
        "",
        table(
            [(part.replace("_", " "), _size(plain[part]), _size(remat[part])) for part in plain],
            ("memory per device" if sharded else "memory", "without checkpointing", "with checkpointing"),
        ),
        setting,
        "",
        table(
            [
                (
                    d["device"],
                    d["name"],
                    _size(d["memory_total"]),
                    _yes(d["fits"]),
                    "n/a" if d["largest_batch"] is None else f"{d['largest_batch']:,}",
                    _lower_bound(d["step_seconds_lower_bound"]),
                )
                for d in devices
            ],
            (
                "device",
                "name",
                "memory",
                "fits",
                "largest global batch" if sharded else "largest batch",
                "step time at peak FLOP/s",
            ),
        ),
        "step time at peak is a lower bound (every FLOP at the device's peak); memory leaves out "
        "framework workspace and allocator slack",
    ]
    if sharded:
        lines += [
            "",
            f"largest zoo decoder that fits per device ({strategy}, tensor parallel {tp}, global batch {batch}):",
            table(
                [
                    (k["device_kind"], _size(k["memory_total"])) + tuple(_fitting(k, n, tp) for n in WORLDS)
                    for k in data["largest_model"]
                ],
                ("device kind", "memory") + tuple(f"{n} device{'s' * (n > 1)}" for n in WORLDS),
            ),
        ]
    return emit(args, data, "\n".join(lines))


WORLDS = (1, 8, 64, 512)


def _largest_models(
    probed: Any, batch: int, strategy: str, tp: int, precision: str, optimizer: str, remat: bool
) -> list[dict[str, Any]]:
    """For each probed device kind (its smallest memory total), the largest zoo decoder that
    fits per device on each of :data:`WORLDS` devices (None: none fits, or ``tp`` does not
    divide that number of devices)."""
    from ..model import estimate as E

    memories: dict[str, list[int]] = {}
    for d in probed:
        memories.setdefault(d.kind, [])
        if d.memory_total is not None:
            memories[d.kind].append(d.memory_total)
    out = []
    for kind, known in memories.items():
        memory = min(known, default=None)
        out.append(
            {
                "device_kind": kind,
                "memory_total": memory,
                "largest_model": {
                    str(n): None
                    if memory is None or n % tp
                    else E.largest_fitting(memory, batch, n, strategy, tp, precision, optimizer, remat)
                    for n in WORLDS
                },
            }
        )
    return out


def _fitting(kind: dict[str, Any], n: int, tp: int) -> str:
    if kind["memory_total"] is None or n % tp:
        return "n/a"
    return kind["largest_model"][str(n)] or "none"


def generate(args: argparse.Namespace, spec: Any) -> int:
    """``sdk estimate --task generate``: the KV cache, the weights and one decode step's
    activations, and per device whether they fit and the longest context that does."""
    from ..model import estimate as E

    if args.prompt_len is None or args.new_tokens is None:
        raise SdkError("--task generate needs --prompt-len and --new-tokens")
    prompt, new, batch, precision = args.prompt_len, args.new_tokens, args.batch_size, args.precision
    parts = E.generation_memory(spec, prompt, new, batch, precision)
    limit = E.context_length(spec)
    devices: list[dict[str, Any]] = []
    for d in get_manager().devices():
        longest = None if d.memory_total is None else E.longest_context(spec, d.memory_total, batch, precision)
        devices.append(
            {
                "device": d.id,
                "name": d.name,
                "memory_total": d.memory_total,
                "fits": None if d.memory_total is None else parts["total"] <= d.memory_total,
                "longest_context": longest,
                "full_context": None if longest is None or not limit else longest >= limit,
            }
        )
    data: dict[str, Any] = {
        "model": spec.name or args.model,
        "task": "generate",
        "parameters": spec.param_count(trainable_only=False),
        "context_length": limit,
        **parts,
        "settings": {"prompt_len": prompt, "new_tokens": new, "batch_size": batch, "precision": precision},
        "devices": devices,
    }

    def context(d: dict[str, Any]) -> str:
        if d["longest_context"] is None:
            return "n/a"
        if d["full_context"]:
            return f"full context ({limit:,})"
        return f"{d['longest_context']:,} tokens" if d["longest_context"] else "none: the weights do not fit"

    names = {"kv_cache": "KV cache", "activations": "activations (one decode step)"}
    lines = [
        f"{data['model']}: {data['parameters']:,} parameters; {new:,} new tokens after a {prompt:,}-token prompt, "
        f"batch {batch}, {precision}",
        "",
        table([(names.get(part, part), _size(n)) for part, n in parts.items()], ("memory", "size")),
        "",
        table(
            [(d["device"], d["name"], _size(d["memory_total"]), _yes(d["fits"]), context(d)) for d in devices],
            ("device", "name", "memory", "fits", f"longest context at batch {batch}"),
        ),
        "KV cache: a key and a value per attention layer, token and sequence; the prefill's activations, "
        "framework workspace and allocator slack are not in it",
    ]
    return emit(args, data, "\n".join(lines))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``estimate``."""
    from ..model.estimate import PRECISIONS, SLOTS, STRATEGIES

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
    p.add_argument("--task", default="train", choices=("train", "generate"), help="what to estimate (default: train)")
    p.add_argument("--world", type=counting(1), default=None, help="devices of a sharded training run (default: 1)")
    p.add_argument(
        "--strategy", default=None, choices=STRATEGIES, help="ddp, or ZeRO stage zero1, zero2 or zero3 (default: ddp)"
    )
    p.add_argument(
        "--tensor-parallel", type=counting(1), default=None, help="devices splitting each layer, dividing --world"
    )
    p.add_argument("--prompt-len", type=counting(1), default=None, help="prompt tokens, with --task generate")
    p.add_argument("--new-tokens", type=counting(0), default=None, help="tokens to generate, with --task generate")
