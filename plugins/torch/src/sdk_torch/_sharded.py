"""Sharded training (ZeRO) and tensor parallelism on torch's own engines.

- Stage 3: FSDP2 (``fully_shard`` on every top-level layer that has parameters, then on the
  root); stage 2: the same with ``reshard_after_forward=False`` (the parameters stay gathered
  from forward to backward, gradients and optimizer state are sharded); stage 1:
  ``ZeroRedundancyOptimizer`` over ``DistributedDataParallel`` (the optimizer state only).
- ``tensor`` > 1: a 2-D DeviceMesh ("dp", "tp"); every transformer block is split Megatron
  style by ``parallelize_module`` (q, k, v and fc1 column-wise, o and fc2 row-wise), then FSDP
  shards over "dp".

The mesh is always explicit (gloo on the cpu, NCCL on CUDA): without one, gloo with visible
GPUs crashes (torch issue 132471). FSDP2 runs on the cpu with gloo from torch 2.6 on (checked
with 2.13.0).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from sdk_core import NotAvailableError, SdkError, StepRequest

from . import _layers

PLAN = {
    "attn.q": ColwiseParallel(),
    "attn.k": ColwiseParallel(),
    "attn.v": ColwiseParallel(),
    "attn.o": RowwiseParallel(),
    "fc1": ColwiseParallel(),
    "fc2": RowwiseParallel(),
}


def check(request: StepRequest) -> None:
    """Refuse, in one line, what sharded torch training does not do here."""
    what = f"ZeRO stage {request.zero}" + (
        f" with tensor parallelism over {request.tensor}" if request.tensor > 1 else ""
    )
    for bad, why in (
        (request.precision != "fp32", f"precision {request.precision} (sharded steps run in float32)"),
        (request.accumulate > 1, f"gradient accumulation (accumulate={request.accumulate})"),
        (request.remat, "activation checkpointing (remat)"),
        (bool(request.masks), "pruning masks"),
        (request.zero == 1 and request.tensor > 1, "ZeroRedundancyOptimizer over DTensor (tensor-parallel) parameters"),
    ):
        if bad:
            raise NotAvailableError(f"torch {what} does not support {why}")
    if request.tensor > 1:
        blocks = [m for m in request.model.module.modules() if isinstance(m, _layers.TransformerBlock)]
        if not blocks:
            raise NotAvailableError(
                f"torch tensor parallelism splits transformer blocks: '{request.spec.name}' has none"
            )
        for block in blocks:
            if block.attn.heads % request.tensor:
                raise SdkError(
                    f"tensor parallelism over {request.tensor} ranks needs a number of attention heads that "
                    f"{request.tensor} divides (a block has {block.attn.heads})"
                )


def shard(model: Any, zero: int, tensor: int, size: int) -> DeviceMesh:
    """Shard ``model``'s module in place (once: a model keeps the sharding it was given)."""
    if model.sharding is not None:
        if model.sharding != (zero, tensor):
            raise NotAvailableError(
                f"this torch model is already sharded as ZeRO stage {model.sharding[0]}, tensor "
                f"{model.sharding[1]}: build it again to train it another way"
            )
        return model.mesh
    kind = model.device.type
    if tensor > 1:
        mesh = init_device_mesh(kind, (size // tensor, tensor), mesh_dim_names=("dp", "tp"))
        for block in model.module.modules():
            if isinstance(block, _layers.TransformerBlock):
                parallelize_module(block, mesh["tp"], PLAN)
        data = mesh["dp"]
    else:
        mesh = data = init_device_mesh(kind, (size,), mesh_dim_names=("dp",))
    if zero >= 2:
        reshard = zero == 3
        # one FSDP unit per transformer block (the embedding, final norm and head go with the
        # root, as FSDP's own examples do: fewer, larger collectives); else per layer with weights
        blocks = [m for m in model.module.modules() if isinstance(m, _layers.TransformerBlock)]
        units = blocks or [layer for layer in model.module.children() if any(True for _ in layer.parameters())]
        for layer in units:
            fully_shard(layer, mesh=data, reshard_after_forward=reshard)
        fully_shard(model.module, mesh=data, reshard_after_forward=reshard)
    model.sharding, model.mesh = (zero, tensor), mesh
    return mesh


def settle(module: torch.nn.Module) -> None:
    """Put every FSDP module back to its sharded parameters (stage 2 keeps them gathered after
    a forward without backward): state reads and writes then see the sharded DTensors."""
    for m in module.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a DTensor is gathered (a collective: every rank calls it)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``value`` (the whole tensor, on every rank) laid out like ``target``: this rank's shard
    of it when ``target`` is a DTensor, taken locally (no communication)."""
    value = value.to(target.device, target.dtype)
    if isinstance(target, DTensor):
        return distribute_tensor(value, target.device_mesh, target.placements, src_data_rank=None)
    return value


def owners(native: Any, params: list[torch.Tensor]) -> list[int]:
    """The rank whose ``ZeroRedundancyOptimizer`` partition holds each parameter."""
    mine = {id(p) for group in native.optim.param_groups for p in group["params"]}
    rank = dist.get_rank()
    found = torch.tensor([rank if id(p) in mine else 0 for p in params], dtype=torch.int64, device=params[0].device)
    dist.all_reduce(found)
    return found.tolist()


class Gathered:
    """What ``_optim.get_state`` reads of an optimizer (``state``), with every parameter's
    state: each slot broadcast from the rank that holds it under ZeRO stage 1."""

    def __init__(self, native: Any, params: list[torch.Tensor], keys: list[str], ranks: list[int]) -> None:
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for p, owner in zip(params, ranks, strict=True):
            local = native.optim.state.get(p, {})
            entry = {}
            for key in keys:
                t = local[key].detach().clone() if key in local else torch.zeros_like(p)
                dist.broadcast(t, src=owner)
                entry[key] = t
            self.state[p] = entry


def local_state(step: Any) -> dict[torch.Tensor, dict[str, torch.Tensor]]:
    """The optimizer state this rank holds: ZeRO stage 1's partition, else the (sharded) state."""
    native = step.native
    return native.optim.state if step.zero == 1 else native.state
