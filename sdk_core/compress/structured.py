"""Structured pruning: whole conv channels and dense units go, giving a smaller ModelSpec.

Channels (units) with the smallest L1 norm are removed, and with them the matching inputs of
the next weighted layer (after a flatten, the block of features each channel became), the
matching batchnorm entries. The output layer keeps its outputs. Sequential models of dense,
conv2d, batchnorm, pooling, flatten, dropout and activations are handled (softmax after the
output layer too); other layers are refused by name.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping

import attrs
import numpy as np

from ..errors import SdkError
from ..model.spec import (
    GELU,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ModelSpec,
    ReLU,
    Sigmoid,
    Tanh,
)
from ..runtime.stack import Stack
from .pruning import check_ratio

# per-element or per-channel layers: a removed channel simply stops flowing through them
PASS_THROUGH = (AvgPool2D, Dropout, GELU, MaxPool2D, ReLU, Sigmoid, Tanh)


def _keep(scores: np.ndarray, amount: float) -> np.ndarray:
    """Indices (in order) of the ``1 - amount`` largest scores; at least one."""
    n = max(1, round(len(scores) * (1 - amount)))
    return np.sort(np.argsort(-scores, kind="stable")[:n])


def prune_structured(
    stack: Stack, amount: float = 0.5, ratios: Mapping[str, float] | None = None, keep: Iterable[str] = ()
) -> Stack:
    """A new stack (same framework and device) whose model has ``amount`` of the channels of
    every conv2d and the units of every hidden dense layer removed (``ratios`` by layer index
    or type; ``keep`` lists layer indices or types left whole), with the remaining weights."""
    spec = stack._need_model()
    if spec.is_graph:
        raise SdkError(
            "structured pruning slims sequential models only: in a graph model (residual, "
            "branches) a merge ties the channels of its inputs together"
        )
    amount = check_ratio(amount)
    keep = {str(k) for k in keep}
    weights = stack.get_weights()
    weighted = [i for i, l in enumerate(spec.layers) if isinstance(l, (Conv2D, Dense))]
    if not weighted:
        raise SdkError("structured pruning found no conv2d or dense layer to slim")
    layers: list[Layer] = []
    out: dict[str, np.ndarray] = {}
    selection: np.ndarray | None = None  # kept channels/features of the tensor flowing in
    for i, layer in enumerate(spec.layers):
        p = f"{i}."
        if isinstance(layer, (Conv2D, Dense)):
            w = weights[p + "weight"]
            if selection is not None and isinstance(layer, Dense) and len(spec.shapes[i]) == 3:
                raise SdkError(f"structured pruning cannot slim layer {i} (dense over a conv output without flatten)")
            if selection is not None:
                w = w[:, selection] if isinstance(layer, Conv2D) else w[selection]
            ratio = amount
            for key, r in (ratios or {}).items():
                if key in (str(i), layer.type, "conv" if isinstance(layer, Conv2D) else ""):
                    ratio = check_ratio(r, f"prune ratio for '{key}'")
            if i == weighted[-1] or str(i) in keep or layer.type in keep or ratio == 0:
                chosen = np.arange(w.shape[0] if isinstance(layer, Conv2D) else w.shape[-1])
            else:
                norms = np.abs(w).reshape(w.shape[0], -1).sum(1) if isinstance(layer, Conv2D) else np.abs(w).sum(0)
                chosen = _keep(norms, ratio)
            out[p + "weight"] = w[chosen] if isinstance(layer, Conv2D) else w[..., chosen]
            if layer.bias:
                out[p + "bias"] = weights[p + "bias"][chosen]
            slimmer: Layer = (
                attrs.evolve(layer, filters=len(chosen))
                if isinstance(layer, Conv2D)
                else attrs.evolve(layer, units=len(chosen))
            )
            layers.append(slimmer)
            selection = None if i == weighted[-1] else chosen
        elif isinstance(layer, BatchNorm):
            for name in ("weight", "bias", "running_mean", "running_var"):
                value = weights[p + name]
                out[p + name] = value if selection is None else value[selection]
            layers.append(layer)
        elif isinstance(layer, Flatten):
            if selection is not None:
                _c, h, w_ = spec.shapes[i]
                selection = (selection[:, None] * (h * w_) + np.arange(h * w_)).ravel()
            layers.append(layer)
        elif isinstance(layer, PASS_THROUGH) or (selection is None and not layer.params(spec.shapes[i])):
            layers.append(layer)
        else:
            raise SdkError(
                f"structured pruning cannot handle layer {i} ({layer.type}): it slims dense and conv2d models"
            )
    slim = ModelSpec(input_shape=spec.input_shape, layers=layers, input_dtype=spec.input_dtype, name=spec.name)
    other = Stack(stack.framework.name, stack.device.id, manager=stack.manager)
    other._build(slim, 0, stack.dtype)
    other.set_weights(out)
    return other


def latency_ratio(slim: Stack, original: Stack, x: np.ndarray, pairs: int = 15) -> tuple[float, float, float]:
    """``(median, min, max)`` of slim/original inference time over interleaved pairs on the
    same stack kind: the speed structured pruning really gives."""
    slim.predict(x)
    original.predict(x)
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        slim.predict(x)
        t1 = time.perf_counter()
        original.predict(x)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios), min(ratios), max(ratios)
