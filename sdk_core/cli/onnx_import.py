"""``sdk import``: an ONNX file as an ordinary weights file with its spec."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from ..errors import SdkError
from ..runtime.console import table
from .common import add_command, emit


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'input_shape' must be whole numbers joined by commas (got {text!r})"
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"'input_shape' must be positive whole numbers, batch first (got {text!r})")
    return dims


def run(args: argparse.Namespace) -> int:
    """``sdk import model.onnx --out model.safetensors``."""
    from ..model import onnx_import
    from ..model.files import check_output
    from ..model.weights import save_weights

    if args.list_ops:
        rows = onnx_import.list_ops()
        return emit(args, [{"operator": o, "opsets": v} for o, v in rows], table(rows, ("operator", "opsets")))
    if not args.model or not args.out:
        raise SdkError("sdk import needs an ONNX file and --out (or --list-ops)")
    check_output(args.out, reads=[args.model], what="weights file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = onnx_import.read(args.model, args.input_shape)
    spec = done.spec
    save_weights(args.out, done.weights, {"spec": spec.to_json(), **done.metadata()})
    layers = sum(1 for layer in spec.layers if layer.type != "op")
    data: dict[str, Any] = {
        "model": args.model,
        "out": args.out,
        "opset": done.opset,
        "input_shape": list(spec.input_shape),
        "free_axes": [a + 1 for a in spec.free_axes],
        "input_dtype": spec.input_dtype,
        "nodes": len(spec.layers),
        "layers": layers,
        "operator_nodes": len(spec.layers) - layers,
        "parameters": spec.param_count(),
        "folded_batchnorm_parameters": done.folded_batchnorm_parameters,
        "folded_lookups": list(done.folded_lookups),
        "untied_weights": list(done.untied),
        "operators": done.census,
        "notes": list(done.notes),
    }
    dims = ", ".join(f"{d} (free)" if a in spec.free_axes else str(d) for a, d in enumerate(spec.input_shape))
    lines = [
        f"imported {args.model} (opset {done.opset}): {len(spec.layers)} nodes, {layers} of them layers; "
        f"{spec.param_count():,} trainable parameters; input (batch, {dims}) {spec.input_dtype}",
        *(f"note: {note}" for note in done.notes),
        f"saved to {args.out}",
    ]
    del caught  # the notes above say what the warnings said, once
    return emit(args, data, "\n".join(lines))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``import``."""
    p = add_command(sub, "import", run, "import an ONNX model as a spec and weights that train in every framework")
    p.add_argument("model", nargs="?", help="the .onnx file")
    p.add_argument("--out", help="the .safetensors file to write (spec included)")
    p.add_argument("--input-shape", type=_shape, default=None, help="full input shape, batch first: 1,3,224,224")
    p.add_argument("--list-ops", action="store_true", help="print the operators sdk import reads, with their opsets")
