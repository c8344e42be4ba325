"""``sdk export``: a saved model as an ONNX file (float32, or int8 for deployment)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import SdkError
from .common import add_command, counting, emit

if TYPE_CHECKING:
    import numpy as np

    from ..model.spec import ModelSpec


def calibration_inputs(spec: ModelSpec, samples: int, path: str | None, seed: int) -> np.ndarray:
    """Calibration inputs for int8: the ``.npy`` file given, else the digits training split
    (image and 64-vector models) or counting text (token models), ``samples`` of them."""
    from ..model.data import counting_text
    from ..model.files import read_npy
    from .common import digits_for

    if path is not None:
        x = read_npy(path, what="calibration data")
    elif spec.input_dtype == "int64":
        vocab = getattr(spec.layers[0], "vocab_size", 2)
        x, _ = counting_text(samples, length=spec.input_shape[0], vocab_size=min(vocab, 16), seed=seed)
    else:
        try:
            x = digits_for(spec, seed)[0]
        except SdkError as exc:
            raise SdkError(f"{exc}: give calibration inputs with --calibration-data x.npy") from None
    return x[:samples]


def export(args: argparse.Namespace) -> int:
    """``sdk export``: write the model in ``--weights`` as ONNX to ``--out``."""
    from ..export.writer import export_file

    if args.task == "generate":
        return export_decoder(args)
    report = export_file(
        args.weights,
        args.out,
        format=args.format,
        opset=args.opset,
        quantize=args.quantize,
        calibration=lambda spec: calibration_inputs(spec, args.calibration_samples, args.calibration_data, args.seed),
        method=args.calibration,
    )
    if not args.json:
        print(f"exported {report['model'] or 'model'} from {args.weights}", file=sys.stderr)
    size = report["bytes"]
    text = f"wrote {args.out}: {size:,} bytes, ONNX opset {report['opset']}"
    if args.quantize:
        text += f", int8 by {report['method']} ({report['float32_bytes'] / size:.1f}x smaller than float32)"
    return emit(args, report, text)


def export_decoder(args: argparse.Namespace) -> int:
    """``sdk export --task generate``: the decoder with past keys and values."""
    from ..export.decoder import export_decoder_file

    if args.quantize:
        raise SdkError("--quantize int8 is for --task predict; the decoder is written in float32")
    report = export_decoder_file(args.weights, args.out, opset=args.opset)
    if not args.json:
        print(f"exported the {report['model'] or 'model'} decoder from {args.weights}", file=sys.stderr)
    text = (
        f"wrote {args.out}: {report['bytes']:,} bytes, ONNX opset {report['opset']}, decoder with past keys and "
        f"values ({report['blocks']} blocks, {report['heads']} heads of {report['head_dim']})"
    )
    return emit(args, report, text)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``export``."""
    from ..export.graph import DEFAULT_OPSET

    p = add_command(sub, "export", export, "write a saved model as an ONNX file (float32 or int8)")
    p.add_argument("--weights", required=True, help="a .safetensors file saved by sdk, or a compressed .sdkz file")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="output format (default: onnx)")
    p.add_argument(
        "--task",
        default="predict",
        choices=("predict", "generate"),
        help="predict: the whole model (default); generate: a decoder with past key/value inputs and outputs",
    )
    p.add_argument("--opset", type=counting(1), default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument(
        "--quantize",
        default=None,
        choices=("int8",),
        help="int8: static quantization (QDQ, per-channel weights); a weight-shared .sdkz keeps its codebooks exactly",
    )
    p.add_argument("--calibration-samples", type=counting(1), default=256, help="calibration inputs (default: 256)")
    p.add_argument(
        "--calibration-data", default=None, help=".npy calibration inputs (default: the digits data or counting text)"
    )
    p.add_argument(
        "--calibration",
        default="minmax",
        choices=("minmax", "percentile", "entropy"),
        help="how activation ranges are measured (default: minmax)",
    )
    p.add_argument("--seed", type=counting(0), default=0, help="random seed, an int >= 0 (default: 0)")
