"""Compute and memory demand of a spec, from its shapes alone.

FLOPs count a multiply-add as two operations and include only matrix products (dense,
convolution, attention scores and mixing): element-wise work is small next to them. A
training step is counted as three forward passes (forward, and the two products of backward).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import attrs

from ..errors import SdkError
from . import spec as S

TRAINING_FACTOR = 3


def _up(n: int, parts: int) -> int:
    """``n / parts`` rounded up: the largest of ``parts`` shares."""
    return -(-n // parts)


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


def activation_values(spec: S.ModelSpec, remat: bool = False, tensor_parallel: int = 1) -> int:
    """Values one training sample keeps between forward and backward, each tensor once: a
    tensor between two layers is kept when the layer after it needs its input for the
    gradient (dense, conv, pooling, norms, GELU, attention) or the layer before it its output
    (ReLU, tanh, sigmoid, softmax); plus what attention and transformer blocks keep inside, the
    logits and their softmax, and the largest of these once more (its gradient, alive during
    backward). With ``remat`` (activation checkpointing) a transformer block keeps only its
    input, and one block at a time is recomputed during backward. In a graph spec a tensor
    read by several nodes is still counted once (tensor ``j + 1`` is node ``j``'s output).

    With ``tensor_parallel`` T (Megatron, without sequence parallelism) a device keeps 1/T of
    a dense layer's output and of what attention and blocks keep inside (and of the MLP's
    hidden gradient); the other tensors between layers are whole on every device."""
    layers, t = spec.layers, tensor_parallel
    sizes = [math.prod(shape) for shape in spec.shapes]
    sizes[1:] = [_up(n, t) if isinstance(l, S.Dense) else n for n, l in zip(sizes[1:], layers, strict=True)]
    kept = [False] * (len(layers) + 1)
    inside, largest_block = 0, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, KEEPS_INPUT):
            for j in spec.sources[i]:
                kept[j + 1] = True
        kept[i + 1] = kept[i + 1] or isinstance(layer, KEEPS_OUTPUT)
        values = _up(_inside(layer, spec.input_shape_of(i)), t)
        if remat and isinstance(layer, S.TransformerBlock):
            largest_block = max(largest_block, values)
        else:
            inside += values
    between = sum(n for n, keep in zip(sizes, kept, strict=True) if keep)
    hidden = max(
        (math.prod(spec.input_shape_of(i)) * getattr(l, "mlp_ratio", 0) for i, l in enumerate(layers)), default=0
    )
    gradient = max(max(sizes), _up(hidden, t))
    return between + inside + largest_block + 2 * sizes[-1] + gradient


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise SdkError(f"'precision' must be one of {', '.join(PRECISIONS)} (got {precision!r})")


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
    _check_precision(precision)
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
    return _most(lambda batch: training_memory(spec, batch, precision, optimizer, remat)["total"], memory)


def _most(total: Callable[[int], int], memory: int) -> int:
    """The largest ``n`` with ``total(n) <= memory``, for a ``total`` linear in ``n``."""
    fixed = total(0)
    per_unit = total(1) - fixed
    return max(0, (memory - fixed) // per_unit) if per_unit else 0


# -- sharded training: ZeRO stages and tensor parallelism, per device --------------------------
STRATEGIES = ("ddp", "zero1", "zero2", "zero3")
"""Plain data parallelism (ZeRO's stage 0: every device keeps every state), then ZeRO stages 1,
2 and 3 (Rajbhandari et al. 2020), which partition over the data-parallel devices the optimizer
state, then the gradients too, then the weights too."""

SPLIT = (S.Dense, S.Attention, S.TransformerBlock, S.Embedding)
"""Layers whose weights tensor parallelism splits (Megatron; an embedding split over its
vocabulary, its position table too); every other layer's weights are whole on each device."""

PREFETCH = 2
"""Layers gathered at once under ZeRO stage 3: the one computing and the next, prefetched."""

DECODERS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "decoder-7b", "decoder-70b")
"""The zoo's decoder family, for the largest model that fits."""


def state_bytes(precision: str, optimizer: str) -> tuple[int, int, int]:
    """Bytes per parameter of the weights, the gradients and the optimizer state, in ZeRO's
    accounting: fp32 (and fp64) keep all three in that precision, the state being the
    optimizer's slots; bf16/fp16 mixed precision keeps 2-byte weights and gradients, and a
    state of float32 master weights plus float32 slots (adam: 2 + 2 + 12, the paper's K = 12)."""
    _check_precision(precision)
    slots = _slots(optimizer)
    if precision in ("bf16", "fp16"):
        return 2, 2, 4 + 4 * slots
    size = ACTIVATION_BYTES[precision]
    return size, size, size * slots


def _check_parallel(world: int, strategy: str, tensor_parallel: int) -> None:
    for name, value in (("world", world), ("tensor_parallel", tensor_parallel)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SdkError(f"'{name}' must be an int >= 1 (got {value!r})")
    if strategy not in STRATEGIES:
        raise SdkError(f"'strategy' must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    if world % tensor_parallel:
        raise SdkError(
            f"'tensor_parallel' {tensor_parallel} does not divide 'world' {world} "
            "(the data-parallel degree is world / tensor_parallel)"
        )


def _undivided(spec: S.ModelSpec, tensor_parallel: int) -> str | None:
    """Why ``tensor_parallel`` cannot split ``spec``'s attention, or None when it can."""
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, (S.Attention, S.TransformerBlock)):
            width = spec.input_shape_of(i)[1]
            if layer.num_heads % tensor_parallel or width % tensor_parallel:
                return (
                    f"layer {spec.node_names[i]} ({layer.type}): 'tensor_parallel' {tensor_parallel} must divide "
                    f"its {layer.num_heads} heads and its width {width}"
                )
    return None


def _layer_params(spec: S.ModelSpec, tensor_parallel: int) -> list[tuple[int, int]]:
    """Each layer's parameters and trainable parameters on one tensor-parallel device."""
    out = []
    for i, layer in enumerate(spec.layers):
        params = layer.params(spec.input_shape_of(i))
        counts = (
            sum(math.prod(p.shape) for p in params),
            sum(math.prod(p.shape) for p in params if p.trainable),
        )
        out.append(tuple(_up(n, tensor_parallel) for n in counts) if isinstance(layer, SPLIT) else counts)
    return out  # type: ignore[return-value]  # pairs


def sharded_memory(
    spec: S.ModelSpec,
    batch_size: int,
    world: int,
    strategy: str,
    tensor_parallel: int = 1,
    precision: str = "fp32",
    optimizer: str = "adam",
    remat: bool = False,
) -> dict[str, int]:
    """Bytes per device of one training step on ``world`` devices, part by part.

    ``tensor_parallel`` T splits the weights of :data:`SPLIT` layers T ways (it must divide
    ``world`` and every attention layer's heads and width); the data-parallel degree is
    D = world / T, and each device computes ``ceil(batch_size / D)`` samples of the global
    ``batch_size``. Per parameter, :func:`state_bytes`; ``strategy`` (:data:`STRATEGIES`)
    partitions over D devices the ``optimizer_state`` (from zero1), the ``gradients`` (from
    zero2) and the ``weights`` (zero3), each device keeping ``ceil(n / D)``. With mixed
    precision Adam this is ZeRO's 16Ψ, 4Ψ + 12Ψ/D, 2Ψ + 14Ψ/D and 16Ψ/D.

    What the data-parallel collectives need beside these (none when D = 1), with "the largest
    layer" counted on one tensor-parallel device (a transformer block is one layer):

    - ``gathered_layer_buffer``: under zero3, the largest layer's weights gathered whole in the
      compute precision, :data:`PREFETCH` layers at once.
    - ``unsharded_gradients``: under zero2 and zero3, the largest layer's whole gradient, which
      backward computes before its reduce-scatter leaves this device its share.
    - ``communication_buffers``: under ddp and zero1, the buckets the gradients' all-reduce reads
      and writes, a copy of every gradient (DistributedDataParallel's buckets); under zero2 and
      zero3, one layer's reduce-scatter input (a copy of its gradient) and all-gather output
      (its weights), the largest layer's.

    ``activations``: :func:`activation_values` for the local batch and T. Each part is its own
    peak and the peaks do not all coincide (the activations are fewest during backward, when the
    gradient buffers are most): the sum errs high. Framework workspace, allocator slack and an
    engine's own copies (FSDP's zero2 keeps the weights' shards beside the gathered weights:
    weights / D more) are not in it."""
    _check_parallel(world, strategy, tensor_parallel)
    why = _undivided(spec, tensor_parallel)
    if why:
        raise SdkError(why)
    weight, gradient, state = state_bytes(precision, optimizer)
    stage, dp = STRATEGIES.index(strategy), world // tensor_parallel
    layers = _layer_params(spec, tensor_parallel)
    params, trainable = sum(p for p, _ in layers), sum(t for _, t in layers)
    largest, largest_trainable = max((p for p, _ in layers), default=0), max((t for _, t in layers), default=0)

    def share(n: int, first_stage: int) -> int:
        return _up(n, dp) if stage >= first_stage else n

    def under(stages: tuple[int, ...], n: int) -> int:
        """``n`` under those stages with D > 1, else 0."""
        return n if stage in stages and dp > 1 else 0

    parts = {
        "weights": weight * share(params, 3),
        "gradients": gradient * share(trainable, 2),
        "optimizer_state": state * share(trainable, 1),
        "gathered_layer_buffer": under((3,), PREFETCH * weight * largest),
        "unsharded_gradients": under((2, 3), gradient * largest_trainable),
        "communication_buffers": under((0, 1), gradient * trainable)
        + under((2, 3), weight * largest + gradient * largest_trainable),
        "activations": activation_values(spec, remat, tensor_parallel)
        * _up(batch_size, dp)
        * ACTIVATION_BYTES[precision],
    }
    return {**parts, "total": sum(parts.values())}


def largest_sharded_batch(
    spec: S.ModelSpec,
    memory: int,
    world: int,
    strategy: str,
    tensor_parallel: int = 1,
    precision: str = "fp32",
    optimizer: str = "adam",
    remat: bool = False,
) -> int:
    """The largest global batch (a multiple of the data-parallel degree) whose
    :func:`sharded_memory` total fits in ``memory`` bytes per device (0 when none does)."""
    _check_parallel(world, strategy, tensor_parallel)
    dp = world // tensor_parallel

    def total(local: int) -> int:
        return sharded_memory(spec, local * dp, world, strategy, tensor_parallel, precision, optimizer, remat)["total"]

    return dp * _most(total, memory)


@functools.cache
def _decoders() -> tuple[S.ModelSpec, ...]:
    from . import zoo

    return tuple(sorted((zoo.get(name) for name in DECODERS), key=lambda spec: spec.param_count()))


def largest_fitting(
    memory: int,
    batch_size: int,
    world: int,
    strategy: str,
    tensor_parallel: int = 1,
    precision: str = "fp32",
    optimizer: str = "adam",
    remat: bool = False,
) -> str | None:
    """The name of the zoo decoder (:data:`DECODERS`) with the most parameters whose
    :func:`sharded_memory` total fits in ``memory`` bytes per device, or None; a decoder whose
    heads ``tensor_parallel`` does not divide is no candidate."""
    _check_parallel(world, strategy, tensor_parallel)
    largest = None
    for spec in _decoders():
        if _undivided(spec, tensor_parallel) is None:
            parts = sharded_memory(spec, batch_size, world, strategy, tensor_parallel, precision, optimizer, remat)
            if parts["total"] <= memory:
                largest = spec.name
    return largest


# -- generation: weights, one decode step and the key/value cache ------------------------------
def _attention_widths(spec: S.ModelSpec) -> list[int]:
    """The width of each attention layer (or block) of a decoder; an error for another model."""
    attention = [
        (layer, spec.input_shape_of(i)[1])
        for i, layer in enumerate(spec.layers)
        if isinstance(layer, (S.Attention, S.TransformerBlock))
    ]
    if spec.input_dtype != "int64" or not attention or not all(layer.causal for layer, _ in attention):
        raise SdkError(
            f"model '{spec.name or 'spec'}' is not a decoder: generation needs int64 tokens in and causal attention"
        )
    return [width for _, width in attention]


def kv_cache_bytes(spec: S.ModelSpec, context: int, batch_size: int, precision: str = "fp32") -> int:
    """The key/value cache of ``batch_size`` sequences of ``context`` tokens: a key and a value
    of each attention layer's width per token, in the compute precision (2 x layers x heads x
    head_dim x context x batch x bytes)."""
    _check_precision(precision)
    return 2 * sum(_attention_widths(spec)) * context * batch_size * ACTIVATION_BYTES[precision]


def context_length(spec: S.ModelSpec) -> int | None:
    """The longest sequence a model takes: its embedding's ``max_len`` (None when unbounded)."""
    limits = [layer.max_len for layer in spec.layers if isinstance(layer, S.Embedding) and layer.max_len]
    return min(limits) if limits else None


def _generation_parts(spec: S.ModelSpec, context: int, batch_size: int, precision: str) -> dict[str, int]:
    size = ACTIVATION_BYTES[precision]
    weights = spec.param_count(trainable_only=False) * size
    step = inference_bytes(attrs.evolve(spec, input_shape=(1,)), batch_size, size)  # one token a sequence
    parts = {
        "kv_cache": kv_cache_bytes(spec, context, batch_size, precision),
        "weights": weights,
        "activations": step - weights,
    }
    return {**parts, "total": sum(parts.values())}


def generation_memory(
    spec: S.ModelSpec, prompt_len: int, new_tokens: int, batch_size: int, precision: str = "fp32"
) -> dict[str, int]:
    """Bytes of generating ``new_tokens`` after a ``prompt_len`` prompt for ``batch_size``
    sequences: the ``kv_cache`` (:func:`kv_cache_bytes` at prompt_len + new_tokens), the
    ``weights`` in the compute precision and the ``activations`` of one decode step (one token
    a sequence, every layer's output kept: :func:`inference_bytes`), and the ``total``. The
    prefill's activations are not in it (a long prompt can be prefilled in chunks)."""
    context = prompt_len + new_tokens
    limit = context_length(spec)
    if limit and context > limit:
        raise SdkError(f"prompt_len + new_tokens = {context} exceeds the model's context length {limit}")
    _check_precision(precision)
    return _generation_parts(spec, context, batch_size, precision)


def longest_context(spec: S.ModelSpec, memory: int, batch_size: int, precision: str = "fp32") -> int:
    """The longest context (prompt + new tokens) whose :func:`generation_memory` total fits in
    ``memory`` bytes at ``batch_size``, capped at :func:`context_length` (0 when not even the
    weights and one decode step fit)."""
    _check_precision(precision)
    longest = _most(lambda context: _generation_parts(spec, context, batch_size, precision)["total"], memory)
    limit = context_length(spec)
    return min(longest, limit) if limit else longest
