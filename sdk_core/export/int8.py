"""int8 ONNX models: static quantization with ``onnxruntime.quantization``, and the exact int8
form of weight-shared (codebook) tensors.

- :func:`quantize_static` writes QDQ pairs (QuantizeLinear/DequantizeLinear) around the
  operators ONNX Runtime runs in int8: weights signed int8, per output channel; activations
  unsigned int8 with ranges calibrated on sample inputs (``minmax``, ``percentile`` or
  ``entropy``). ONNX Runtime fuses the pairs into integer kernels.
- :func:`codebook_int8` stores each tensor that holds at most 256 distinct values (a
  weight-shared tensor from a ``.sdkz`` file, with its pruned zeros) as 8-bit codes: int8 with
  one scale (``DequantizeLinear``) where the values lie on an int8 grid, else uint8 indices
  into its float codebook (``Gather``). Either way the weights are reproduced exactly.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SdkError
from .graph import require_onnx

if TYPE_CHECKING:
    import onnx

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
CALIBRATION_BATCH = 32
# the products run in int8; the rest (norms, softmax, the causal mask's -inf) stays float
INT8_OPS = ("Conv", "MatMul", "Gemm", "Gather", "MaxPool", "AveragePool", "Relu", "Flatten")


def _require_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise SdkError("int8 quantization needs onnxruntime: pip install 'sdk-core[onnx]'") from None
    return quantization


class _Batches:
    """``onnxruntime.quantization.CalibrationDataReader``: the calibration inputs in batches."""

    def __init__(self, x: np.ndarray) -> None:
        self.batches: Iterator[np.ndarray] = (x[s : s + CALIBRATION_BATCH] for s in range(0, len(x), CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"x": batch}


def quantize_static(
    model: onnx.ModelProto, calibration: np.ndarray, method: str = "minmax", per_channel: bool = True
) -> onnx.ModelProto:
    """``model`` (written by :func:`~sdk_core.export.to_onnx`) quantized to int8 (QDQ), with
    activation ranges calibrated on the inputs ``calibration`` (``(n, *input_shape)``)."""
    onnx = require_onnx()
    q = _require_quantization()
    if method not in CALIBRATION_METHODS:
        raise SdkError(f"'method' must be one of {', '.join(CALIBRATION_METHODS)} (got {method!r})")
    if len(calibration) == 0:
        raise SdkError("int8 calibration needs at least one sample input")
    methods = {
        "minmax": q.CalibrationMethod.MinMax,
        "percentile": q.CalibrationMethod.Percentile,
        "entropy": q.CalibrationMethod.Entropy,
    }
    ids = model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    calibration = np.ascontiguousarray(calibration, dtype=np.int64 if ids else np.float32)
    with tempfile.TemporaryDirectory(prefix="sdk-int8-") as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("model.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(model, source)
        q.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        q.quantize_static(
            str(prepared),
            str(target),
            _Batches(calibration),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OPS),
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        out = onnx.load(target)
    del out.graph.value_info[:]  # shapes the pre-processing inferred: ONNX Runtime infers them again
    _keep_props(model, out)
    onnx.checker.check_model(out, full_check=True)
    return out


def _keep_props(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """The spec and version of ``source`` in ``target`` (the quantizer may drop them)."""
    have = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            target.metadata_props.add(key=prop.key, value=prop.value)


def _int8_grid(values: np.ndarray) -> tuple[np.ndarray, np.float32] | None:
    """``(codes, scale)`` with ``codes * scale == values`` exactly in float32, or None."""
    nonzero = np.abs(values[values != 0])
    if not nonzero.size:
        return np.zeros(values.shape, np.int8), np.float32(1.0)
    scale = np.float32(nonzero.min())
    codes = np.round(values / scale)
    if np.abs(codes).max() > 127:
        return None
    codes = codes.astype(np.int8)
    if not np.array_equal(codes.astype(np.float32) * scale, values):
        return None
    return codes, scale


def codebook_int8(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Store each weight of ``model`` named in ``weights`` that holds at most 256 distinct
    values as 8-bit codes, exactly (see the module docstring). Returns the new model and, per
    weight, how it is stored: ``int8`` (codes and one scale), ``codebook`` (uint8 indices and a
    float table) or ``float32`` (too many distinct values)."""
    onnx = require_onnx()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept, front, how = [], [], {}
    for init in graph.initializer:
        if init.name not in weights or np.ndim(weights[init.name]) < 2:  # kernels and matrices only
            kept.append(init)
            continue
        value = np.asarray(weights[init.name], np.float32)
        table, index = np.unique(value, return_inverse=True)
        if len(table) > 256:
            kept.append(init)
            how[init.name] = "float32"
            continue
        grid = _int8_grid(value)
        if grid is not None:
            codes, scale = grid
            kept += [
                onnx.numpy_helper.from_array(codes, f"{init.name}.int8"),
                onnx.numpy_helper.from_array(np.asarray(scale, np.float32), f"{init.name}.scale"),
            ]
            front.append(
                onnx.helper.make_node(
                    "DequantizeLinear", [f"{init.name}.int8", f"{init.name}.scale"], [init.name], name=init.name
                )
            )
            how[init.name] = "int8"
            continue
        kept += [
            onnx.numpy_helper.from_array(index.reshape(value.shape).astype(np.uint8), f"{init.name}.codes"),
            onnx.numpy_helper.from_array(table.astype(np.float32), f"{init.name}.codebook"),
        ]
        front += [
            onnx.helper.make_node(
                "Cast",
                [f"{init.name}.codes"],
                [f"{init.name}.index"],
                to=onnx.TensorProto.INT32,
                name=f"{init.name}.index",
            ),
            onnx.helper.make_node(
                "Gather", [f"{init.name}.codebook", f"{init.name}.index"], [init.name], axis=0, name=init.name
            ),
        ]
        how[init.name] = "codebook"
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = front + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out, full_check=True)
    return out, how
