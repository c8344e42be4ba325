"""int8 post-training quantization, simulated in any framework.

Weights: symmetric per output channel, ``w ≈ scale[c] * q`` with ``q`` in [-127, 127]
(conv2d and embedding channels on axis 0, dense-like weights on their last axis). Activations:
one affine uint8 range per tensor between layers, calibrated on sample data by ``minmax`` or
``percentile``. :class:`Quantized` runs the model layer by layer on the stack's own framework,
quantizing and dequantizing each activation in between: the accuracy int8 execution would
give, measured without an int8 kernel. Real int8 execution belongs to an exporter.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from ..errors import SdkError
from ..model import metrics
from ..model.spec import ModelSpec
from ..runtime.stack import Stack
from .pruning import prunable

METHODS = ("minmax", "percentile")
SCHEMES = ("int8",)


def channel_axis(kind: str, ndim: int) -> int:
    return 0 if kind in ("conv2d", "embedding") else ndim - 1


def quantize_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int8, scales float32)``: symmetric per channel along ``axis``."""
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    peak = np.abs(moved).max(axis=1)
    scales = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(w / scales.reshape(shape)), -127, 127).astype(np.int8)
    return codes, scales


def dequantize(codes: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * codes.ndim
    shape[axis] = -1
    return (codes.astype(np.float32) * scales.reshape(shape)).astype(np.float32)


def _qdq(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Affine uint8 quantize-dequantize over ``[lo, hi]`` (widened to hold zero)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.rint(-lo / scale)
    return ((np.clip(np.rint(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


@attrs.define
class Quantized:
    """The int8 model: weight codes and scales, activation ranges, and a simulator."""

    stack: Stack
    codes: dict[str, np.ndarray]
    scales: dict[str, np.ndarray]
    axes: dict[str, int]
    ranges: list[tuple[float, float] | None]
    method: str
    chain: list[Stack] = attrs.field(factory=list, repr=False)

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Outputs with every weight int8 and every activation between layers uint8."""
        spec = self.stack._need_model()
        h = spec.check_input(x)
        for i, layer_stack in enumerate(self.chain):
            if self.ranges[i] is not None:
                h = _qdq(h, *self.ranges[i])  # type: ignore[misc]
            h = layer_stack.predict(h, batch_size)
        return h

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        spec = self.stack._need_model()
        x = spec.check_input(x)
        y = metrics.check_targets(spec, "cross_entropy", y, len(x))
        out = self.predict(x)
        return {"loss": metrics.loss_value("cross_entropy", out, y), "accuracy": metrics.accuracy(out, y)}


def layer_chain(stack: Stack) -> list[Stack]:
    """One single-layer stack per layer of ``stack``'s model, holding its current weights."""
    spec = stack._need_model()
    if spec.is_graph:
        raise SdkError(
            "int8 simulation runs sequential models only; for a graph model (residual, branches) "
            "export int8 ONNX instead: sdk export --quantize int8"
        )
    weights = stack.get_weights()
    chain = []
    for i, layer in enumerate(spec.layers):
        part = ModelSpec(
            input_shape=spec.shapes[i], layers=[layer], input_dtype=spec.input_dtype if i == 0 else "float32"
        )
        one = Stack(stack.framework.name, stack.device.id, manager=stack.manager)
        one._build(part, 0, stack.dtype)
        prefix = f"{i}."
        one.set_weights({"0." + n[len(prefix) :]: w for n, w in weights.items() if n.startswith(prefix)})
        chain.append(one)
    return chain


def calibrate(
    chain: list[Stack], spec: ModelSpec, x: np.ndarray, method: str, percentile: float
) -> list[tuple[float, float] | None]:
    """The range of the input of every layer on the sample ``x`` (None for token inputs and
    for the input of layers that only move data: flatten, dropout, pooling keep the range)."""
    ranges: list[tuple[float, float] | None] = []
    h = x
    for i, layer_stack in enumerate(chain):
        if i == 0 and spec.input_dtype == "int64":
            ranges.append(None)
        elif method == "minmax":
            ranges.append((float(h.min()), float(h.max())))
        else:
            lo, hi = np.percentile(h, [100 - percentile, percentile])
            ranges.append((float(lo), float(hi)))
        h = layer_stack.predict(h)
    return ranges


def quantize(
    stack: Stack,
    x: Any,
    scheme: str = "int8",
    method: str = "minmax",
    percentile: float = 99.99,
    samples: int = 512,
) -> Quantized:
    """int8 post-training quantization of ``stack``'s model, calibrated on up to ``samples``
    rows of ``x``. The stack's weights become their dequantized int8 values (masks hold:
    a pruned weight quantizes to 0). Returns the :class:`Quantized` model and simulator."""
    if scheme not in SCHEMES:
        raise SdkError(f"unknown quantization '{scheme}' (known: {', '.join(SCHEMES)})")
    if method not in METHODS:
        raise SdkError(f"unknown calibration method '{method}' (known: {', '.join(METHODS)})")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 50 < percentile <= 100:
        raise SdkError(f"the calibration percentile must be in (50, 100] (got {percentile!r})")
    spec = stack._need_model()
    x = spec.check_input(x, finite=True)
    if len(x) == 0:
        raise SdkError("quantization needs calibration samples (got none)")
    names = prunable(stack)
    weights = stack.get_weights()
    codes, scales, axes = {}, {}, {}
    for name, kind in names.items():
        axes[name] = channel_axis(kind, weights[name].ndim)
        codes[name], scales[name] = quantize_weight(weights[name], axes[name])
        weights[name] = dequantize(codes[name], scales[name], axes[name])
    stack.set_weights(weights)
    chain = layer_chain(stack)
    ranges = calibrate(chain, spec, x[:samples], method, float(percentile))
    return Quantized(stack, codes, scales, axes, ranges, method, chain)
