"""The core's optimizers as ``torch.optim`` optimizers, which follow the core's rules as they
are; the schedule (evaluated by the core) drives a ``LambdaLR``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from sdk_core import Optimizer
from sdk_core.model.optim import OptimizerState, state_slots

from ._sharded import full, like

# torch's single-kernel ("fused") optimizers, on the devices they run on: one kernel a tensor
# for the whole update instead of several; on the cpu a torch MLP epoch with Adam takes 0.65x
# the time, LeNet-5 0.88x (benchmarks/overhead_torch.py --native-fused compares like with like)
FUSED = {"sgd", "adagrad", "adam", "adamw"}
FUSED_DEVICES = {"cpu", "cuda"}


def make_optimizer(opt: Optimizer, params, zero: bool = False) -> tuple[torch.optim.Optimizer, Any]:
    """torch.optim's optimizers follow the core's rules as they are (fused where torch has the
    kernel: the same update, rounded in another order); the schedule is a LambdaLR. ``zero``:
    the optimizer inside a ``ZeroRedundancyOptimizer`` (ZeRO stage 1: each rank keeps the
    state of its partition of the parameters)."""
    params = list(params)
    # DTensor (sharded) parameters: torch has no sharding rule for every fused kernel (_fused_sgd_)
    plain = not any(isinstance(p, DTensor) for p in params)
    fused = {"fused": True} if plain and opt.name in FUSED and {p.device.type for p in params} <= FUSED_DEVICES else {}
    if opt.name == "sgd":
        cls, kwargs = (
            torch.optim.SGD,
            dict(lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=opt.weight_decay, **fused),
        )
    elif opt.name == "adagrad":
        cls, kwargs = torch.optim.Adagrad, dict(lr=opt.lr, eps=opt.eps, weight_decay=opt.weight_decay, **fused)
    elif opt.name == "rmsprop":
        cls, kwargs = torch.optim.RMSprop, dict(lr=opt.lr, alpha=opt.rho, eps=opt.eps, weight_decay=opt.weight_decay)
    else:
        cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        kwargs = dict(lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay, **fused)
    if zero:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        native = ZeroRedundancyOptimizer(params, optimizer_class=cls, **kwargs)
    else:
        native = cls(params, **kwargs)
    schedule = None
    if not opt.schedule.is_constant:
        schedule = torch.optim.lr_scheduler.LambdaLR(native, lambda t: opt.lr_at(t) / opt.lr)
    return native, schedule


# torch.optim's state keys -> the canonical slots (sdk_core.model.optim.STATE_SLOTS)
SLOTS = {
    "sgd": {"momentum_buffer": "momentum"},
    "adagrad": {"sum": "sum"},
    "rmsprop": {"square_avg": "square_avg"},
    "adam": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
    "adamw": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
}


def _canonical(name: str, value: torch.Tensor, transposed: set[str]) -> np.ndarray:
    array = full(value.detach()).cpu().numpy()
    return (array.T if name in transposed else array).copy()


def get_state(
    opt: Optimizer,
    native: torch.optim.Optimizer | None,
    params: dict[str, torch.nn.Parameter],
    transposed: set[str],
    count: int,
) -> OptimizerState:
    """torch.optim's state in the canonical layout (a slot not created yet reads as zeros)."""
    slots: dict[str, dict[str, np.ndarray]] = {}
    for key, slot in SLOTS[opt.name].items():
        if slot not in state_slots(opt):
            continue
        slots[slot] = {}
        for name, p in params.items():
            value = native.state.get(p, {}).get(key) if native is not None else None
            slots[slot][name] = _canonical(name, value if value is not None else torch.zeros_like(p), transposed)
    return OptimizerState(count, slots)


def set_state(
    state: OptimizerState,
    opt: Optimizer,
    native: torch.optim.Optimizer | None,
    schedule: Any,
    params: dict[str, torch.nn.Parameter],
    transposed: set[str],
) -> None:
    """Put canonical optimizer state into torch.optim (and the schedule at its step)."""
    if native is None:
        return
    for name, p in params.items():
        entry: dict[str, torch.Tensor] = {}
        if opt.name != "sgd":
            # a fused optimizer keeps its step counter on the parameters' device
            entry["step"] = torch.tensor(float(state.step), device=p.device if native.defaults.get("fused") else None)
        for key, slot in SLOTS[opt.name].items():
            if slot in state.slots:
                value = state.slots[slot][name]
                value = value.T if name in transposed else value
                entry[key] = like(torch.from_numpy(np.ascontiguousarray(value)), p)
        if entry:
            native.state[p] = entry
    if schedule is not None:
        schedule.last_epoch = state.step
    for group in native.param_groups:
        group["lr"] = opt.lr_at(state.step)
