"""``sdk convert``: a checkpoint in another library's layout as an SDK weights file."""

from __future__ import annotations

import argparse

from .common import add_command, counting, emit


def convert(args: argparse.Namespace) -> int:
    """``sdk convert``: convert ``path`` to ``--out``."""
    from ..model.convert import convert_file

    report = convert_file(args.path, args.out, source=args.source, model=args.model, heads=args.heads)
    text = (
        f"wrote {args.out}: {report['model']}, {report['blocks']} blocks of width {report['dim']}, "
        f"{report['heads']} heads, context {report['context']}, vocabulary {report['vocab']} "
        f"({report['parameters']:,} parameters)"
    )
    return emit(args, report, text)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``convert``."""
    from ..model.convert import SOURCES

    p = add_command(sub, "convert", convert, "convert a checkpoint from another library's layout (GPT-2)")
    p.add_argument("path", help="the checkpoint: a transformers GPT2LMHeadModel model.safetensors")
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the checkpoint's layout")
    p.add_argument("--model", default="gpt2", help="zoo name of the model (default: gpt2; gives the heads)")
    p.add_argument("--heads", type=counting(1), default=None, help="attention heads when no config.json is beside it")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
