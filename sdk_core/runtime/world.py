"""Which process of a data-parallel job this is, from the environment the launcher set.

``sdk launch`` and torchrun set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; SLURM's ``srun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS`` and
``SLURM_LOCALID`` (rank 0's address then comes from ``MASTER_ADDR``, else the first node of
``SLURM_JOB_NODELIST`` or ``SLURM_LAUNCH_NODE_IPADDR``). ``SDK_DIST_TIMEOUT`` bounds the
collectives in seconds (default 120). Nothing set: a job of one process.

A framework that runs a coordinator of its own (JAX's coordination service, MindSpore's
scheduler, TensorFlow's workers from there on) listens on ``SDK_CORE_COORDINATOR_PORT``,
default ``MASTER_PORT + 1``: never ``MASTER_PORT`` itself, which torchrun's rendezvous store
already holds. A fixed offset rather than a free port that rank 0 picks and shares: it needs no
store to share it through (srun and ``sdk launch`` have none, and JAX, TensorFlow and MindSpore
do not need torch), every rank computes it alone, and a firewall can be opened for it ahead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import SdkError
from ..plugins.requests import World

DEFAULT_PORT = 29500
DEFAULT_TIMEOUT = 120.0
COORDINATOR_PORT = "SDK_CORE_COORDINATOR_PORT"


def _int(environ: Mapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except ValueError:
        raise SdkError(f"environment variable {key} must be an int (got {environ[key]!r})") from None


def _first_node(nodelist: str) -> str:
    """``node[01-04],gpu7`` -> ``node01``: the first host of a SLURM node list."""
    found = re.match(r"([^,\[]+)(?:\[(\d+)[^\]]*\])?", nodelist)
    return "" if not found else found[1] + (found[2] or "")


def from_environ(environ: Mapping[str, str] | None = None) -> World:
    """The :class:`World` the environment describes (rank 0 of 1 when nothing is set)."""
    env = os.environ if environ is None else environ
    timeout = float(env.get("SDK_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        address = env.get("MASTER_ADDR", "127.0.0.1")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, size, local = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"), _int(env, "SLURM_LOCALID")
        address = (
            env.get("MASTER_ADDR")
            or _first_node(env.get("SLURM_JOB_NODELIST", ""))
            or env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
        )
    else:
        return World(timeout=timeout)
    if size < 1 or not 0 <= rank < size:
        raise SdkError(f"rank {rank} of a job of {size} processes is not a valid place in it")
    port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_PORT
    coordinator = _int(env, COORDINATOR_PORT) if env.get(COORDINATOR_PORT) else port + 1
    for key, value in (("MASTER_PORT", port), (f"{COORDINATOR_PORT} (default MASTER_PORT + 1)", coordinator)):
        if not 0 < value < 65536:
            raise SdkError(f"{key} must be a port number in [1, 65535] (got {value})")
    return World(rank, size, local, address, port, timeout, coordinator)


@attrs.frozen
class DataParallel:
    """``fit(..., strategy=DataParallel(timeout=60))``: data-parallel training on the
    framework's own engine, over the processes the launcher started (``sdk launch``, torchrun,
    srun). ``timeout`` (seconds) overrides ``SDK_DIST_TIMEOUT`` for the collectives."""

    timeout: float | None = None


def _stage(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in (1, 2, 3) or isinstance(value, bool):
        raise SdkError(f"Sharded 'stage' must be 1, 2 or 3 (got {value!r})")


def _tensor(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SdkError(f"Sharded 'tensor' must be a whole number >= 1 (got {value!r})")


@attrs.frozen
class Sharded:
    """``fit(..., strategy=Sharded(stage=3, tensor=1))``: sharded data-parallel training
    (ZeRO) on the framework's own engine (FSDP2 and ``ZeroRedundancyOptimizer`` in torch,
    sharded ``jit`` in JAX), over the processes the launcher started.

    ``stage`` 1 shards the optimizer state over the ranks, 2 also the gradients, 3 also the
    parameters (gathered layer by layer for forward and backward). ``tensor`` > 1 also splits
    dense and attention layers column- and row-wise (Megatron) over groups of ``tensor``
    ranks; the world size must be a multiple of it. The losses and updates are those of one
    process with the same global batch. ``"zero1"``, ``"zero2"`` and ``"zero3"`` are
    ``Sharded(1)``, ``Sharded(2)`` and ``Sharded(3)``."""

    stage: int = attrs.field(default=3, validator=_stage)
    tensor: int = attrs.field(default=1, validator=_tensor)
    timeout: float | None = None


_JOINED: dict[str, World] = {}


def joined(framework: str) -> World | None:
    """The world ``framework`` joined in this process, if it did."""
    return _JOINED.get(framework)


def remember(framework: str, world: World) -> None:
    _JOINED[framework] = world
