"""``sdk checkpoint consolidate``: a sharded run's checkpoint as one ordinary weights file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SdkError
from .common import add_command, emit


def consolidate(args: argparse.Namespace) -> int:
    """The newest complete checkpoint in DIR (sharded or not) -> the weights file ``--out``,
    with its spec, the way ``Stack.save`` writes it. Offline: no process group, no framework."""
    from ..model.files import check_output
    from ..model.weights import save_weights
    from ..runtime.checkpoint import newest

    directory = Path(args.directory)
    if not directory.is_dir():
        raise SdkError(f"checkpoint directory '{directory}' is not a directory")
    check_output(args.out, what="weights file")
    found = newest(directory)
    if found is None:
        raise SdkError(f"'{directory}' holds no complete checkpoint")
    path, tensors, meta = found
    if "spec" not in meta:
        raise SdkError(f"checkpoint '{path}' holds no model spec")
    weights = {k[len("weights/") :]: v for k, v in tensors.items() if k.startswith("weights/")}
    save_weights(args.out, weights, {"spec": meta["spec"], "framework": meta.get("framework", "")})
    if not args.json:
        print(f"consolidated {path.name}: {len(weights)} weights", file=sys.stderr)
    data = {"checkpoint": str(path), "weights": args.out, "tensors": len(weights)}
    return emit(args, data, f"weights saved to {args.out}")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``checkpoint`` (``consolidate``)."""
    p = sub.add_parser(
        "checkpoint", help="work with training checkpoints", description="work with training checkpoints"
    )
    actions = p.add_subparsers(dest="action", required=True)
    c = add_command(actions, "consolidate", consolidate, "the newest complete checkpoint in DIR as one weights file")
    c.add_argument("directory", metavar="DIR", help="a checkpoint directory (fit's checkpoint_dir)")
    c.add_argument("--out", required=True, help="the .safetensors weights file to write")
