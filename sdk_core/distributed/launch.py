"""Start the processes of a data-parallel job on this node and watch them.

Each worker gets the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and ``SDK_DIST_TIMEOUT``, so the same
script also runs under torchrun or srun unchanged. Each worker runs in its own process group.
Rank 0's standard output is the job's (so ``--json`` prints once); the others' is dropped,
their standard error is kept. When a worker fails, the others are stopped (SIGTERM, then
SIGKILL after a grace period) and the job ends with an error naming the rank; an interrupted
launcher stops them all too: nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import attrs

from ..errors import SdkError

GRACE = 5.0


@attrs.frozen
class Job:
    """A job's shape: processes per node, nodes, this node's rank and rank 0's address."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    timeout: float = 120.0

    def check(self) -> None:
        for name in ("nproc_per_node", "nnodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SdkError(f"'{name}' must be a positive int (got {value!r})")
        if not 0 <= self.node_rank < self.nnodes:
            raise SdkError(f"'node_rank' must be in [0, {self.nnodes}) (got {self.node_rank!r})")
        if not self.timeout > 0:
            raise SdkError(f"'timeout' must be a positive number of seconds (got {self.timeout!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command_of(argv: Sequence[str]) -> list[str]:
    """The worker's command: ``sdk ...`` runs this Python's sdk_core."""
    if not argv:
        raise SdkError("give the command to run after --, e.g. sdk launch --nproc-per-node 2 -- sdk train")
    return [sys.executable, "-m", "sdk_core", *argv[1:]] if argv[0] == "sdk" else list(argv)


def _stop(workers: dict[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every running worker's process group, then SIGKILL what is left after GRACE."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in workers.values() if p.poll() is None]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + GRACE
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if p.poll() is None]
            time.sleep(0.05)
        if not alive:
            return


def launch(argv: Sequence[str], job: Job | None = None) -> int:
    """Run ``argv`` as the workers of ``job`` on this node; returns 0 when every worker
    succeeded, else raises :class:`SdkError` naming the first rank that failed."""
    job = job or Job()
    job.check()
    command = command_of(argv)
    port = job.master_port or (free_port() if job.nnodes == 1 else 29500)
    size = job.nproc_per_node * job.nnodes
    workers: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for local in range(job.nproc_per_node):
            rank = job.node_rank * job.nproc_per_node + local
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(size),
                "LOCAL_RANK": str(local),
                "LOCAL_WORLD_SIZE": str(job.nproc_per_node),
                "MASTER_ADDR": job.master_addr,
                "MASTER_PORT": str(port),
                "SDK_DIST_TIMEOUT": str(job.timeout),
            }
            out = None if rank == 0 else subprocess.DEVNULL
            workers[rank] = subprocess.Popen(command, env=env, stdout=out, start_new_session=True)
        while True:
            failed = [(r, p.returncode) for r, p in workers.items() if p.poll() is not None and p.returncode != 0]
            if failed:
                rank, code = failed[0]
                others = sum(p.poll() is None for p in workers.values())
                _stop(workers)
                why = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                raise SdkError(f"rank {rank} {why}; stopped the {others} other running rank(s)")
            if all(p.poll() is not None for p in workers.values()):
                return 0
            time.sleep(0.05)
    except BaseException:
        _stop(workers)
        raise
