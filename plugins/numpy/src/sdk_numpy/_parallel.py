"""Data-parallel training for the reference: each rank's gradients, weighted by its share of
the global batch, are summed over the ranks by torch.distributed's gloo collectives (NumPy has
no collectives of its own). It needs torch installed; without it data-parallel training is
refused with the reason."""

from __future__ import annotations

import atexit
import datetime
import importlib
from typing import Any

import numpy as np

from sdk_core import NotAvailableError
from sdk_core.plugins.requests import DistributedRequest


def _dist() -> Any:
    try:
        dist = importlib.import_module("torch.distributed")
    except ImportError:
        raise NotAvailableError(
            "NumPy data-parallel training sums gradients with torch.distributed's gloo: pip install torch"
        ) from None
    return dist


def init_distributed(request: DistributedRequest) -> None:
    """Join the job's gloo group (rendezvous over TCP at rank 0), once per process."""
    dist, world = _dist(), request.world
    if not dist.is_initialized():
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{world.address}:{world.port}",
            rank=world.rank,
            world_size=world.size,
            timeout=datetime.timedelta(seconds=world.timeout),
        )
        atexit.register(_leave)  # a gloo group still up at exit aborts the process (SIGABRT)


def _leave() -> None:
    dist = _dist()
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(values: np.ndarray) -> np.ndarray:
    torch = importlib.import_module("torch")
    tensor = torch.from_numpy(np.array(values, np.float64))
    _dist().all_reduce(tensor)
    return tensor.numpy()


def global_batch(value: float, grads: dict[str, np.ndarray], rows: int) -> tuple[float, dict[str, np.ndarray]]:
    """The loss and gradients of the global batch from this rank's (of ``rows`` samples): one
    all-reduce of every rank's values weighted by its rows, then divided by the total rows."""
    names = sorted(grads)
    flat = np.concatenate([grads[n].ravel() * rows for n in names] + [np.array([value * rows, rows], np.float64)])
    total = all_reduce(flat)
    out, start = {}, 0
    for n in names:
        size = grads[n].size
        out[n] = (total[start : start + size] / total[-1]).reshape(grads[n].shape).astype(grads[n].dtype)
        start += size
    return float(total[-2] / total[-1]), out
