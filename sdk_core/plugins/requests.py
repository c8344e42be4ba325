"""Requests the core sends to a framework plugin's hooks: build, compile a step, predict, read
or write weights and optimizer state. Loaded on first use: discovery never needs them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .records import DTYPES, DeviceInfo

if TYPE_CHECKING:
    from ..model.optim import Optimizer, OptimizerState
    from ..model.spec import ModelSpec


def _check_dtype(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in DTYPES:
        raise ValueError(f"'{attribute.name}' must be one of {DTYPES} (got {value!r})")


@attrs.frozen
class BuildRequest:
    """Ask the plugin named ``framework`` to build ``spec`` on ``device``.

    With ``strict``, a backend the device needs but that cannot be used (an execution
    provider that is not installed or does not load) is an error; without it the plugin may
    fall back to another backend, but must say so with a warning, never silently."""

    framework: str
    spec: ModelSpec
    device: DeviceInfo
    dtype: str = attrs.field(default="float32", validator=_check_dtype)
    seed: int = 0
    strict: bool = False


@attrs.frozen
class World:
    """The processes of a data-parallel job: this one's ``rank`` of ``size``, its
    ``local_rank`` on its node, and where rank 0 listens (``address``:``port``) for the
    frameworks' own rendezvous. ``timeout`` (seconds) bounds every collective: a rank that died
    ends the job within it instead of a framework's default (gloo's 30 minutes).
    ``coordinator_port`` (default ``port + 1``) is where a framework that runs a coordinator of
    its own listens on rank 0's host (JAX's, MindSpore's scheduler; TensorFlow's worker ``r`` on
    ``coordinator_port + r``): ``port`` may already be held by the launcher's store (torchrun's)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    address: str = "127.0.0.1"
    port: int = 29500
    timeout: float = 120.0
    coordinator_port: int = attrs.field(default=attrs.Factory(lambda world: world.port + 1, takes_self=True))

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, shows progress and writes files."""
        return self.rank == 0


@attrs.frozen
class DistributedRequest:
    """Ask the plugin named ``framework`` to join ``world`` with its own engine (once per
    process), for ``device``."""

    framework: str
    device: DeviceInfo
    world: World


@attrs.frozen
class AllReduceRequest:
    """Ask for the sum of ``values`` (a small float64 numpy array) over every rank."""

    framework: str
    values: Any


@attrs.frozen
class StepRequest:
    """Ask for a compiled training step for ``model`` (built by the same plugin).

    ``masks`` (canonical names and layout, arrays of 0 and 1, trainable weights only) are
    pruning masks: after every update of the step, including the optimizer's own, each masked
    weight is multiplied by its mask inside the step, so a pruned weight stays exactly zero.
    A plugin that cannot do this declares ``training:masks`` unsupported.

    ``accumulate`` > 1: the step splits each batch it gets into ``accumulate`` micro-batches
    (``ceil(n / accumulate)`` samples each, the last one smaller), runs forward and backward on
    one at a time, sums their gradients weighted by their share of the batch and makes one
    update: the same loss and update as the whole batch at once, with the activation memory
    of one micro-batch (``training:accumulate``).

    ``precision`` ``bf16`` or ``fp16``: mixed precision. Master weights, gradients and the
    optimizer stay float32; the forward and backward passes compute in the low precision
    (``precision:bf16``, ``precision:fp16``). ``fp16`` uses dynamic loss scaling: a step whose
    gradients overflow is skipped, and the step object counts those in its ``skipped``
    attribute (an int), which ``fit`` reports. A device that cannot run a precision is a
    :class:`~sdk_core.errors.NotAvailableError` when the step is made.

    ``remat``: activation checkpointing of transformer blocks with the framework's own tool; a
    block keeps only its input and recomputes the rest during backward
    (``training:remat``).

    ``world`` (data-parallel training, the ``data_parallel`` capability): the step gets this
    rank's shard of each global batch. It averages gradients over every rank with its engine
    (so every rank makes the same update), weighting each rank by its shard's share of the
    global batch so that uneven shards give the global batch's gradient exactly, and returns
    the loss of the whole global batch.

    ``zero`` 1, 2 or 3 (with ``world``; the ``sharded`` capability): the training state is
    sharded over the ranks with the framework's own engine, ZeRO style. Stage 1 shards the
    optimizer state, stage 2 also the gradients, stage 3 also the parameters (gathered layer by
    layer for forward and backward). The losses and updates are those of data-parallel
    training. ``tensor`` > 1 (``tensor_parallel``): dense and attention layers are also split
    column- and row-wise (Megatron) over groups of ``tensor`` consecutive ranks; the data
    parallel degree is then ``world.size // tensor`` and the ranks of one group read the same
    shard of the batch. ``sdk_get_weights`` and the optimizer-state hooks still answer full
    canonical arrays on every rank (gathering where needed: every rank calls them together)."""

    framework: str
    model: Any
    spec: ModelSpec
    device: DeviceInfo
    loss: str
    optimizer: Optimizer
    seed: int = 0
    masks: Mapping[str, Any] | None = None
    accumulate: int = 1
    precision: str = "fp32"
    remat: bool = False
    world: World | None = None
    zero: int = attrs.field(default=0, validator=attrs.validators.in_((0, 1, 2, 3)))
    tensor: int = attrs.field(default=1, validator=attrs.validators.ge(1))


@attrs.frozen
class PredictRequest:
    """Ask for an inference function for ``model``."""

    framework: str
    model: Any
    spec: ModelSpec
    device: DeviceInfo


@attrs.frozen
class DecodeRequest:
    """Ask for a key/value-cache decoder of ``model`` (a decoder spec: int64 token input,
    causal attention, logits over the vocabulary) for ``batch`` rows of at most ``capacity``
    positions (prompt and new tokens; never more than the spec's context). See
    ``sdk_make_decoder`` for what the decoder must do."""

    framework: str
    model: Any
    spec: ModelSpec
    device: DeviceInfo
    batch: int = attrs.field(validator=attrs.validators.ge(1))
    capacity: int = attrs.field(validator=attrs.validators.ge(1))


@attrs.frozen
class QuantizeRequest:
    """Ask for an int8 inference model made from ``model`` and its current weights.

    ``calibration`` holds sample inputs ``(n, *spec.input_shape)`` from which activation
    ranges are measured, by ``method`` (``minmax``, ``percentile`` or ``entropy``); weights
    are quantized per output channel when ``per_channel``."""

    framework: str
    model: Any
    spec: ModelSpec
    device: DeviceInfo
    calibration: Any
    method: str = "minmax"
    per_channel: bool = True


@attrs.frozen
class WeightsRequest:
    """Read (``weights`` is None) or write the canonical weights of ``model``."""

    framework: str
    model: Any
    spec: ModelSpec
    weights: Mapping[str, Any] | None = None


@attrs.frozen
class OptimizerStateRequest:
    """Read (``state`` is None) or write the optimizer state of ``step``, a training step the
    same plugin made for ``model`` with ``optimizer`` (see :class:`OptimizerState`)."""

    framework: str
    model: Any
    spec: ModelSpec
    optimizer: Optimizer
    step: Any
    state: OptimizerState | None = None
