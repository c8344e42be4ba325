"""Devices, weights conversion, the training step and the predict function."""

from __future__ import annotations

import atexit
import datetime
import functools
import gc
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from sdk_core import BuildRequest, DeviceInfo, NotAvailableError, StepRequest
from sdk_core.model.optim import OptimizerState
from sdk_core.plugins.requests import DistributedRequest

from . import _layers, _sharded
from ._decode import decoder  # noqa: F401  (the sdk_make_decoder hook's runtime function)
from ._optim import SLOTS, get_state, make_optimizer, set_state

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def torch_device(device: DeviceInfo) -> torch.device:
    """``cpu``, ``cuda:N`` and any other kind torch exposes (``npu:N`` with torch_npu)."""
    if device.kind == "cpu":
        return torch.device("cpu")
    if device.kind == "npu":
        import torch_npu  # noqa: F401  (registers the npu device with torch)
    return torch.device(device.kind, device.index)


@functools.lru_cache(maxsize=64)
def _plain_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """The strides of a freshly allocated C-ordered array of ``shape``."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


class TorchModel:
    """The native module with what the hooks need beside it."""

    def __init__(self, request: BuildRequest) -> None:
        torch.manual_seed(request.seed)
        self.device, self.dtype = torch_device(request.device), DTYPES[request.dtype]
        self.module = _layers.build(request.spec).to(self.device, self.dtype)
        self.transposed = _layers.linear_weights(self.module)
        self.tokens = request.spec.input_dtype == "int64"
        self.ddp: DistributedDataParallel | None = None  # made by the first data-parallel step
        self.sharding: tuple[int, int] | None = None  # (ZeRO stage, tensor) once a sharded step made it
        self.mesh = None

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        # torch warns on a read-only array (a memory-mapped file's batch): such a batch is copied
        x = np.ascontiguousarray(x) if x.flags.writeable else np.array(x)
        t = torch.from_numpy(x)
        if x.strides != _plain_strides(x.shape, x.itemsize):
            # numpy may give a size-1 axis any stride; torch then reads (B, 1, H, W) as
            # channels-last and picks slower kernels. Flattening and viewing back restores plain
            # strides without a copy (only when needed: it costs ~10 us, a lot for a small step).
            t = t.reshape(-1).view(t.shape)
        return t.to(self.device, torch.long if self.tokens else self.dtype, non_blocking=True)

    def get_weights(self) -> dict[str, np.ndarray]:
        """The canonical weights; a sharded model's are gathered (every rank calls this together)."""
        if self.sharding is not None:
            _sharded.settle(self.module)
        out = {}
        for name, t in self.module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            value = _sharded.full(t.detach()).cpu().numpy()
            out[name] = (value.T if name in self.transposed else value).copy()
        return out

    @torch.no_grad()
    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        if self.sharding is not None:
            _sharded.settle(self.module)
        state = self.module.state_dict()
        for name, value in weights.items():
            value = value.T if name in self.transposed else value
            state[name].copy_(_sharded.like(torch.from_numpy(np.ascontiguousarray(value)), state[name]))


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "cross_entropy":
        # (batch, classes) as it is; sequence outputs flattened to (positions, classes)
        return lambda out, y: (
            F.cross_entropy(out, y) if out.ndim == 2 else F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        )
    return F.mse_loss


class Pending:
    """A loss whose sum over the ranks is still travelling: ``float()`` waits for it."""

    def __init__(self, total: torch.Tensor, work: Any, parts: int) -> None:
        self.total, self.work, self.parts = total, work, parts

    def __float__(self) -> float:
        if self.work is not None:
            self.work.wait()
            self.work = None
        return float(self.total) / self.parts


class Step:
    """``step(x, y) -> loss``: one eager update; ``get_state`` / ``set_state`` for checkpoints."""

    def __init__(self, request: StepRequest) -> None:
        self.model: TorchModel = request.model
        self.module, self.optimizer = self.model.module, request.optimizer
        self.world = request.world if request.world is not None and request.world.size > 1 else None
        # ZeRO stage and tensor-parallel degree (_sharded): the module is sharded in place, once
        self.zero, self.tensor = (request.zero, request.tensor) if self.world is not None else (0, 1)
        if self.zero:
            _sharded.check(request)
            mesh = _sharded.shard(self.model, self.zero, self.tensor, self.world.size)
            if self.zero == 1 and self.model.ddp is None:
                self.model.ddp = DistributedDataParallel(self.module, device_mesh=mesh)
                _WRAPPED.add(self.model)
        elif self.model.sharding is not None:
            raise NotAvailableError(
                f"this torch model is sharded (ZeRO stage {self.model.sharding[0]}): train it with the same strategy"
            )
        self.params = dict(self.module.named_parameters())
        # a spec without weights (pooling only) still trains: forward and loss, nothing to update
        self.native, self.schedule = (
            make_optimizer(request.optimizer, list(self.params.values()), zero=self.zero == 1)
            if self.params
            else (None, None)
        )
        # stage 1: which rank's partition holds each parameter's optimizer state
        self.owners = _sharded.owners(self.native, list(self.params.values())) if self.zero == 1 and self.params else []
        self.loss_of = loss_fn(request.loss)
        self.targets_dtype = torch.long if request.loss == "cross_entropy" else self.model.dtype
        self.count = self.skipped = 0
        self.accumulate, self.remat = request.accumulate, request.remat
        self.blocks = [m for m in self.module.modules() if isinstance(m, _layers.TransformerBlock)]
        self.autocast = None if request.precision == "fp32" else LOW[request.precision]
        # fp16 needs dynamic loss scaling; bf16 has float32's range and needs none
        self.scaler = torch.amp.GradScaler(self.model.device.type) if request.precision == "fp16" else None
        self.plain = self.autocast is None and self.accumulate == 1 and not self.blocks
        if self.world is not None and not self.zero:
            if not self.plain:
                raise NotAvailableError(
                    "data-parallel torch steps run in float32 without accumulation or checkpointing here"
                )
            if self.model.ddp is None:  # one wrapper per model: it broadcasts rank 0's weights once
                self.model.ddp = DistributedDataParallel(self.module)
                _WRAPPED.add(self.model)
        # pruning masks in the native layout, applied after each update in one fused call
        masks = request.masks or {}
        self.masked = [self.params[n] for n in masks]
        self.masks = [
            torch.from_numpy(np.ascontiguousarray(m.T if n in self.model.transposed else m)).to(
                self.model.device, self.model.dtype
            )
            for n, m in masks.items()
        ]

    def __call__(self, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        module, model = self.module, self.model
        if not module.training:
            module.train()
        if self.world is not None:
            return self._data_parallel(x, y)
        if not self.plain:
            return self._general(x, y)
        target = torch.from_numpy(np.ascontiguousarray(y)).to(model.device, self.targets_dtype, non_blocking=True)
        loss = self.loss_of(module(model.tensor(x)), target)
        if self.native is not None:
            self.native.zero_grad(set_to_none=True)
            loss.backward()
            self._update()
        self.count += 1
        return loss.detach()

    def _data_parallel(self, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        """This rank's shard through DistributedDataParallel. DDP averages gradients over the
        ranks; each rank's loss is weighted by its share of the global batch (times the number
        of ranks) so that uneven shards still give the global batch's gradient, and the loss
        returned is the global batch's."""
        model, world, tensor = self.model, self.world, self.tensor
        # ZeRO stages 2 and 3 (and tensor parallelism): the FSDP root averages over "dp" itself
        forward = self.module if self.zero >= 2 else model.ddp
        assert world is not None and forward is not None
        target = torch.from_numpy(np.ascontiguousarray(y)).to(model.device, self.targets_dtype)
        shares = torch.tensor([float(len(x))], device=model.device)
        # the ranks of one tensor-parallel group hold the same shard: counted T times. The sum
        # travels while the forward pass runs; the loss's, until the caller reads it.
        counted = dist.all_reduce(shares, async_op=True)
        unweighted = self.loss_of(forward(model.tensor(x)), target)
        counted.wait()
        loss = unweighted * (len(x) * tensor / shares[0])
        if self.native is not None:
            self.native.zero_grad(set_to_none=True)
            (loss * (world.size // tensor)).backward()
            self._update()
        total = loss.detach().clone()
        summed = dist.all_reduce(total, async_op=True)
        self.count += 1
        return Pending(total, summed, tensor)

    def _update(self) -> None:
        assert self.native is not None
        self.native.step()
        if self.schedule is not None:
            self.schedule.step()
        if self.masks:
            with torch.no_grad():
                torch._foreach_mul_(self.masked, self.masks)

    def _general(self, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        """Micro-batches (gradient accumulation), autocast and loss scaling, checkpointed blocks."""
        model, n = self.model, len(x)
        for block in self.blocks:
            block.remat = self.remat
        size = -(-n // self.accumulate)
        if self.native is not None:
            self.native.zero_grad(set_to_none=True)
        total = torch.zeros((), device=model.device)
        for s in range(0, n, size):
            xb, share = model.tensor(x[s : s + size]), min(size, n - s) / n
            target = torch.from_numpy(np.ascontiguousarray(y[s : s + size])).to(model.device, self.targets_dtype)
            with torch.autocast(model.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                loss = self.loss_of(self.module(xb), target).float() * share
            if self.native is not None:
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += loss.detach()
        if self.native is not None:
            if self.scaler is None:
                self._update()
            else:
                scale = self.scaler.get_scale()
                self.scaler.step(self.native)  # skipped when a gradient is inf or NaN
                self.scaler.update()
                if self.scaler.get_scale() < scale:
                    self.skipped += 1
                    return total
                if self.schedule is not None:
                    self.schedule.step()
                if self.masks:
                    with torch.no_grad():
                        torch._foreach_mul_(self.masked, self.masks)
        self.count += 1
        return total

    def get_state(self) -> OptimizerState:
        native: Any = self.native
        if self.zero == 1 and native is not None:  # every slot from the rank that holds it
            keys = list(SLOTS[self.optimizer.name])
            native = _sharded.Gathered(native, list(self.params.values()), keys, self.owners)
        return get_state(self.optimizer, native, self.params, self.model.transposed, self.count)

    def set_state(self, state: OptimizerState) -> None:
        set_state(state, self.optimizer, self.native, self.schedule, self.params, self.model.transposed)
        if self.zero == 1 and self.native is not None:  # each rank keeps its partition's state
            rank = dist.get_rank()
            for p, owner in zip(self.params.values(), self.owners, strict=True):
                entry = self.native.state.pop(p, None)
                if entry and owner == rank:
                    self.native.optim.state[p] = entry
        self.count = state.step


def train_step(request: StepRequest) -> Step:
    return Step(request)


def predict(model: TorchModel) -> Callable[[np.ndarray], np.ndarray]:
    module = model.module

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        if module.training:
            module.eval()
        y = module(model.tensor(x)).cpu().numpy()
        if model.sharding is not None:
            _sharded.settle(module)  # stage 2 keeps a forward's gathered parameters: shard them again
        # a model that only moves values (Flatten, a Transpose node) returns a view of the input
        return y.copy() if np.may_share_memory(y, x) else y

    return run


def init_distributed(request: DistributedRequest) -> None:
    """torch.distributed: gloo on the cpu, NCCL on CUDA, rendezvous over TCP at rank 0."""
    world = request.world
    if dist.is_initialized():
        return
    backend = "nccl" if request.device.kind == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://{world.address}:{world.port}",
        rank=world.rank,
        world_size=world.size,
        timeout=datetime.timedelta(seconds=world.timeout),
    )
    # leave the group before exit: a gloo group still up at exit aborts the process (SIGABRT)
    atexit.register(_leave)


_WRAPPED: weakref.WeakSet[TorchModel] = weakref.WeakSet()  # models holding a DDP wrapper (and its group)


def _leave() -> None:
    """Drop the DDP wrappers (their reducers hold the group) and destroy the group while the
    interpreter is still whole: gloo threads torn down during finalization abort the process."""
    for model in list(_WRAPPED):
        model.ddp = None
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(values: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(np.asarray(values, np.float64).copy())
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


build = TorchModel  # the FrameworkHooks runtime contract: build(request) -> model
