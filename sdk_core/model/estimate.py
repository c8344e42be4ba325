"""Compute and memory demand of a spec, from its shapes alone.

FLOPs count a multiply-add as two operations and include only matrix products (dense,
convolution, attention scores and mixing): element-wise work is small next to them. A
training step is counted as three forward passes (forward, and the two products of backward).
"""

from __future__ import annotations

import math

from ..errors import SdkError
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
    return sum(_layer_flops(l, spec.input_shape_of(i), spec.shapes[i + 1]) for i, l in enumerate(spec.layers))


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


# -- the memory of a training step, part by part ----------------------------------------------
PRECISIONS = ("fp32", "bf16", "fp16", "fp64")
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}
SLOTS = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2}


KEEPS_INPUT = (S.Dense, S.Conv2D, S.MaxPool2D, S.BatchNorm, S.LayerNorm, S.GELU, S.Attention, S.TransformerBlock)
KEEPS_OUTPUT = (S.ReLU, S.Tanh, S.Sigmoid, S.Softmax)


def _inside(layer: S.Layer, shape: S.Shape) -> int:
    """Values kept inside an attention layer or transformer block for one sample, beyond its
    input: the q, k, v projections, the mixed heads and the softmax statistics (attention as
    a fused kernel, as every framework's flash or memory-efficient attention runs it: no
    T x T matrix is kept), and in a block its norms' outputs, the residual sum and the MLP's
    hidden activations."""
    if not isinstance(layer, (S.Attention, S.TransformerBlock)):
        return 0
    t, d = shape
    attention = 4 * t * d + layer.num_heads * t
    if isinstance(layer, S.Attention):
        return attention
    return attention + 3 * t * d + 2 * t * d * layer.mlp_ratio


def activation_values(spec: S.ModelSpec, remat: bool = False) -> int:
    """Values one training sample keeps between forward and backward, each tensor once: a
    tensor between two layers is kept when the layer after it needs its input for the
    gradient (dense, conv, pooling, norms, GELU, attention) or the layer before it its output
    (ReLU, tanh, sigmoid, softmax); plus what attention and transformer blocks keep inside, the
    logits and their softmax, and the largest of these once more (its gradient, alive during
    backward). With ``remat`` (activation checkpointing) a transformer block keeps only its
    input, and one block at a time is recomputed during backward. In a graph spec a tensor
    read by several nodes is still counted once (tensor ``j + 1`` is node ``j``'s output)."""
    layers, shapes = spec.layers, spec.shapes
    kept = [False] * (len(layers) + 1)
    inside, largest_block = 0, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, KEEPS_INPUT):
            for j in spec.sources[i]:
                kept[j + 1] = True
        kept[i + 1] = kept[i + 1] or isinstance(layer, KEEPS_OUTPUT)
        values = _inside(layer, spec.input_shape_of(i))
        if remat and isinstance(layer, S.TransformerBlock):
            largest_block = max(largest_block, values)
        else:
            inside += values
    sizes = [math.prod(shape) for shape in shapes]
    between = sum(n for n, keep in zip(sizes, kept, strict=True) if keep)
    hidden = max(
        (math.prod(spec.input_shape_of(i)) * getattr(l, "mlp_ratio", 0) for i, l in enumerate(layers)), default=0
    )
    gradient = max(max(sizes), hidden)
    return between + inside + largest_block + 2 * sizes[-1] + gradient


def _slots(optimizer: str) -> int:
    if optimizer not in SLOTS:
        raise SdkError(f"'optimizer' must be one of {', '.join(SLOTS)} (got {optimizer!r})")
    return SLOTS[optimizer]


def training_memory(
    spec: S.ModelSpec, batch_size: int, precision: str = "fp32", optimizer: str = "adam", remat: bool = False
) -> dict[str, int]:
    """Bytes of one training step, part by part: ``weights`` (float32 master weights, plus a
    half-precision copy under bf16/fp16 mixed precision), ``gradients``, ``optimizer`` (its
    slots: ``momentum`` is SGD with momentum), ``activations`` for ``batch_size`` samples in
    the compute precision, and ``total``. Framework workspace and allocator slack are not in
    it: compare with measurement (``benchmarks/memory_estimate.py``)."""
    if precision not in PRECISIONS:
        raise SdkError(f"'precision' must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    master = 8 if precision == "fp64" else 4
    params = spec.param_count(trainable_only=False)
    trainable = spec.param_count()
    weights = params * master + (params * 2 if precision in ("bf16", "fp16") else 0)
    parts = {
        "weights": weights,
        "gradients": trainable * master,
        "optimizer": trainable * master * _slots(optimizer),
        "activations": activation_values(spec, remat) * batch_size * ACTIVATION_BYTES[precision],
    }
    return {**parts, "total": sum(parts.values())}


def largest_batch(
    spec: S.ModelSpec, memory: int, precision: str = "fp32", optimizer: str = "adam", remat: bool = False
) -> int:
    """The largest batch size whose :func:`training_memory` total fits in ``memory`` bytes
    (0 when not even the weights and optimizer state fit)."""
    fixed = training_memory(spec, 0, precision, optimizer, remat)["total"]
    per_sample = training_memory(spec, 1, precision, optimizer, remat)["total"] - fixed
    return max(0, (memory - fixed) // per_sample) if per_sample else 0
