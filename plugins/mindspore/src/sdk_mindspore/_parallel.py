"""Data-parallel training on MindSpore's ``communication`` package: its dynamic cluster (a
scheduler process and one worker per rank, over TCP) and ``AllReduce`` inside the compiled
step. Rank 0 starts the scheduler on ``MASTER_ADDR`` at the world's coordinator port
(``MASTER_PORT + 1`` unless ``SDK_CORE_COORDINATOR_PORT``); the environment MindSpore
reads (``MS_ROLE``, ``MS_SCHED_HOST``, ``MS_SCHED_PORT``, ``MS_WORKER_NUM``, ``MS_NODE_ID``)
is set from the world the launcher described (``sdk launch``, torchrun, srun).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

import numpy as np
from mindspore import Tensor, ops
from mindspore.communication import get_group_size, init

from sdk_core.plugins.requests import World

SCHEDULER = "from mindspore.communication import init; init()"
_JOINED: list[int] = []


def _environment(world: World) -> dict[str, str]:
    return {
        "MS_SCHED_HOST": world.address,
        "MS_SCHED_PORT": str(world.coordinator_port),  # torchrun's store holds world.port
        "MS_WORKER_NUM": str(world.size),
        "MS_NODE_ID": str(world.rank),
        "MS_TOPO_TIMEOUT": str(int(world.timeout)),
    }


def join(world: World) -> None:
    """Join the job's cluster once per process (rank 0 starting its scheduler first)."""
    if _JOINED:
        return
    env = _environment(world)
    if world.rank == 0:
        scheduler = subprocess.Popen(
            [sys.executable, "-c", SCHEDULER],
            env={**os.environ, **env, "MS_ROLE": "MS_SCHED"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(scheduler.kill)
    os.environ.update({**env, "MS_ROLE": "MS_WORKER"})
    init()
    _JOINED.append(get_group_size())


def all_reduce(values: np.ndarray) -> np.ndarray:
    """Sums over the ranks, in float32 (what MindSpore's CPU collectives add): ample for the
    sums of losses and counts that validation reduces."""
    return ops.AllReduce()(Tensor(np.asarray(values, np.float32))).asnumpy().astype(np.float64)


def global_gradients(grad_fn):
    """``grad_fn`` whose loss and gradients are the global batch's: each rank's weighted by
    its rows, summed by ``AllReduce`` and divided by the global rows, inside the graph."""
    reduce = ops.AllReduce()

    def run(x, y):
        loss, grads = grad_fn(x, y)
        rows = ops.ones((1,), loss.dtype) * x.shape[0]
        total = reduce(rows)
        grads = tuple(reduce(g * rows) / total for g in grads)
        return reduce(loss.reshape(1) * rows)[0] / total[0], grads

    return run
