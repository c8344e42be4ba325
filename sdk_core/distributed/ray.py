"""``sdk launch --launcher ray``: the job's workers as Ray tasks on an existing Ray cluster
(``RAY_ADDRESS``, or ``ray start --head`` on this machine), or on a local Ray started for the
job when there is none.

Rank 0 runs on the driver's node, whose address is ``MASTER_ADDR``; the other ranks go where
Ray places them. Each task runs the command with the same environment ``sdk launch`` gives a
local worker. Rank 0's standard output is printed by the launcher; when a task fails, the
others are cancelled (their processes killed) and the job ends with an error naming the rank.
Ray is an optional dependency: ``pip install 'sdk-core[ray]'``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import SdkError
from .launch import Job, command_of, free_port


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SdkError("--launcher ray needs Ray: pip install 'sdk-core[ray]' (or pip install ray)") from None
    return ray


def _run(command: list[str], env: dict[str, str], keep_output: bool) -> tuple[int, str]:
    """One worker inside its Ray task: the command's exit code and (rank 0) its output."""
    done = subprocess.run(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE if keep_output else subprocess.DEVNULL, text=True
    )
    return done.returncode, done.stdout or ""


def launch_ray(argv: Sequence[str], job: Job | None = None) -> int:
    """Run ``argv`` as ``job.nproc_per_node * job.nnodes`` Ray tasks; 0 when all succeeded."""
    job = job or Job()
    job.check()
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    command = command_of(argv)
    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ValueError, ConnectionError, RuntimeError) as exc:
            raise SdkError(f"cannot start or reach Ray at {address or 'this machine'}: {exc}") from None
    try:
        size = job.nproc_per_node * job.nnodes
        address = ray.util.get_node_ip_address()
        port = job.master_port or free_port()
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        task = ray.remote(num_cpus=0)(_run)
        futures = {}
        for rank in range(size):
            env = {
                "RANK": str(rank),
                "WORLD_SIZE": str(size),
                "LOCAL_RANK": str(rank % job.nproc_per_node),
                "LOCAL_WORLD_SIZE": str(job.nproc_per_node),
                "MASTER_ADDR": address,
                "MASTER_PORT": str(port),
                "SDK_DIST_TIMEOUT": str(job.timeout),
            }
            options = {"scheduling_strategy": here} if rank == 0 else {}
            futures[task.options(**options).remote(command, env, rank == 0)] = rank
        pending = list(futures)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            code, output = ray.get(ready[0])
            rank = futures[ready[0]]
            if rank == 0 and output:
                sys.stdout.write(output)
                sys.stdout.flush()
            if code != 0:
                for other in pending:
                    ray.cancel(other, force=True)
                why = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                raise SdkError(f"rank {rank} {why} (a Ray task); cancelled the {len(pending)} other running rank(s)")
        return 0
    finally:
        if started:
            ray.shutdown()
