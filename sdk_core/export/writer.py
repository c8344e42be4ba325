"""``export_file``: a weights file (safetensors or ``.sdkz``) to an ONNX file, what ``sdk
export`` runs. The output is checked before any work and written atomically; it never
replaces the input."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import SdkError, SpecError, WeightsError
from ..model import sdkz
from ..model.files import atomic_write, check_output
from ..model.spec import ModelSpec
from ..model.weights import load_weights
from .graph import DEFAULT_OPSET, check_opset, to_onnx
from .int8 import CALIBRATION_METHODS, codebook_int8, quantize_static

FORMATS = ("onnx",)
QUANTIZE = ("int8",)


def read_model(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, np.ndarray], dict[str, str]]:
    """``(spec, weights, metadata)`` of a safetensors or ``.sdkz`` file saved by the SDK."""
    weights, meta = load_weights(path)
    if "spec" not in meta:
        raise WeightsError(f"'{path}' holds no model spec: save it with Stack.save or sdk train --out")
    try:
        spec = ModelSpec.from_json(meta["spec"])
    except SpecError as exc:
        raise WeightsError(f"'{path}' holds an invalid spec: {exc}") from None
    spec.check_weights(weights, what=f"weights in '{path}'")
    return spec, weights, meta


def export_file(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    format: str = "onnx",
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    calibration: Callable[[ModelSpec], np.ndarray] | np.ndarray | None = None,
    method: str = "minmax",
) -> dict[str, Any]:
    """Write the model in ``weights`` to ``out`` as ONNX; returns a report of what was written.

    ``quantize="int8"``: for a ``.sdkz`` file whose weights are shared (codebooks), the
    codebooks are stored as exact 8-bit codes (:func:`~sdk_core.export.int8.codebook_int8`, no
    calibration); otherwise static int8 quantization with activation ranges measured on
    ``calibration`` (sample inputs, or a function of the spec giving them) by ``method``.
    """
    if format not in FORMATS:
        raise SdkError(f"'format' must be one of {', '.join(FORMATS)} (got {format!r})")
    if quantize not in (None, *QUANTIZE):
        raise SdkError(f"'quantize' must be one of {', '.join(QUANTIZE)} or None (got {quantize!r})")
    if method not in CALIBRATION_METHODS:
        raise SdkError(f"'method' must be one of {', '.join(CALIBRATION_METHODS)} (got {method!r})")
    opset = check_opset(opset)
    check_output(out, reads=[weights], what="ONNX file")
    spec, tensors, meta = read_model(weights)
    source = {"sdk_core.source": os.path.basename(os.fspath(weights))}
    model = to_onnx(spec, tensors, opset, metadata=source)
    report: dict[str, Any] = {"model": spec.name, "opset": opset, "quantize": quantize}
    report["float32_bytes"] = model.ByteSize()
    if quantize == "int8" and sdkz.is_sdkz(weights):
        shared, how = codebook_int8(model, {p.name: tensors[p.name] for p in spec.layout() if p.trainable})
        if any(kind != "float32" for kind in how.values()):
            model, report["method"], report["tensors"] = shared, "codebook (exact)", how
    if quantize == "int8" and "method" not in report:
        x = calibration(spec) if callable(calibration) else calibration
        if x is None:
            raise SdkError("int8 quantization needs calibration inputs")
        x = spec.check_input(x, finite=True)
        model = quantize_static(model, x, method)
        report["method"], report["calibration_samples"] = f"static QDQ ({method})", len(x)
    data = model.SerializeToString()
    atomic_write(out, data)
    return {**report, "out": os.fspath(out), "bytes": len(data), "source_format": meta.get("format", "safetensors")}
