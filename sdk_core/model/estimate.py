"""Compute and memory demand of a spec, from its shapes alone.

FLOPs count a multiply-add as two operations and include only matrix products (dense,
convolution, attention scores and mixing): element-wise work is small next to them. A
training step is counted as three forward passes (forward, and the two products of backward).
"""

from __future__ import annotations

import math

from . import spec as S

TRAINING_FACTOR = 3


def _layer_flops(layer: S.Layer, shape: S.Shape, out: S.Shape) -> int:
    if isinstance(layer, S.Dense):
        return 2 * math.prod(shape) * layer.units
    if isinstance(layer, S.Conv2D):
        return 2 * shape[0] * layer.kernel_size**2 * math.prod(out)
    if isinstance(layer, (S.Attention, S.TransformerBlock)):
        t, d = shape
        flops = 2 * t * d * d * 4 + 2 * 2 * t * t * d  # q, k, v, o projections; scores; mixing
        if isinstance(layer, S.TransformerBlock):
            flops += 2 * 2 * t * d * d * layer.mlp_ratio
        return flops
    return 0


def forward_flops(spec: S.ModelSpec) -> int:
    """Floating point operations of one forward pass for one sample."""
    return sum(_layer_flops(l, spec.shapes[i], spec.shapes[i + 1]) for i, l in enumerate(spec.layers))


def training_flops(spec: S.ModelSpec) -> int:
    """Floating point operations of one training step for one sample."""
    return TRAINING_FACTOR * forward_flops(spec)


def training_bytes(spec: S.ModelSpec, batch_size: int, bytes_per_value: int = 4) -> int:
    """A conservative training footprint: weights, gradients and two optimizer moments, plus
    every layer's activations kept for the backward pass (twice, for their gradients)."""
    weights = spec.param_count(trainable_only=False)
    activations = sum(math.prod(s) for s in spec.shapes) * batch_size
    return (4 * weights + 2 * activations) * bytes_per_value


def inference_bytes(spec: S.ModelSpec, batch_size: int, bytes_per_value: int = 4) -> int:
    """A conservative inference footprint: the weights and every layer's activations."""
    weights = spec.param_count(trainable_only=False)
    activations = sum(math.prod(s) for s in spec.shapes) * batch_size
    return (weights + activations) * bytes_per_value
