"""Data-parallel training on ``tf.distribute.MultiWorkerMirroredStrategy``: one worker per
process, variables mirrored, gradients summed by TensorFlow's collectives (ring, over gRPC).

TensorFlow's collectives must be configured before its first operation, so the strategy is
made when this plugin's runtime loads in a process that a launcher made part of a job. The
cluster comes from ``TF_CONFIG`` when the user set it (any cluster), else from SLURM's node
list (``SlurmClusterResolver``), else, when every worker runs on this host (``sdk launch`` and
torchrun set ``LOCAL_WORLD_SIZE``), from ``MASTER_ADDR`` with ports ``coordinator_port + rank``
(``MASTER_PORT + 1 + rank`` unless ``SDK_CORE_COORDINATOR_PORT`` is set).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from sdk_core import NotAvailableError
from sdk_core.plugins.requests import World
from sdk_core.runtime.world import from_environ

from ._framework import tf

_STRATEGY: list[Any] = []  # this process's strategy, once made


def _resolver(world: World, environ=os.environ):
    resolvers = tf.distribute.cluster_resolver
    if "TF_CONFIG" in environ:
        return resolvers.TFConfigClusterResolver()
    if "SLURM_PROCID" in environ and "RANK" not in environ and int(environ.get("SLURM_NNODES", "1")) > 1:
        return resolvers.SlurmClusterResolver(port_base=world.coordinator_port)
    local = environ.get("LOCAL_WORLD_SIZE")
    one_host = int(local) == world.size if local is not None else int(environ.get("SLURM_NNODES", "1")) == 1
    if not one_host:
        raise NotAvailableError(
            "a TensorFlow job over several hosts needs their addresses: set TF_CONFIG on each worker "
            "(see docs/distributed.md), or run it under SLURM"
        )
    workers = [f"{world.address}:{world.coordinator_port + rank}" for rank in range(world.size)]
    return resolvers.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": workers}), task_type="worker", task_id=world.rank, rpc_layer="grpc"
    )


def start_from_environ() -> None:
    """Make the strategy of the job the environment describes, before TensorFlow computes."""
    world = from_environ()
    if world.size > 1 and not _STRATEGY:
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=world.timeout, implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        _STRATEGY.append(
            tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_resolver(world), communication_options=options)
        )


def strategy(size: int):
    """The strategy of a job of ``size`` processes, which this process joined at start-up."""
    if not _STRATEGY or _STRATEGY[0].num_replicas_in_sync != size:
        raise NotAvailableError(
            "TensorFlow's collectives start before its first operation: run the job through sdk "
            "launch, torchrun or srun, which set the environment before the tensorflow plugin loads"
        )
    return _STRATEGY[0]


def scope():
    """Where variables are made: mirrored across the workers in a job, plain otherwise."""
    return _STRATEGY[0].scope() if _STRATEGY else contextlib.nullcontext()


def joined() -> bool:
    return bool(_STRATEGY)


def all_reduce(values: np.ndarray) -> np.ndarray:
    job = _STRATEGY[0]
    local = np.asarray(values, np.float64)
    return job.reduce("sum", job.run(lambda: tf.constant(local)), axis=None).numpy()
