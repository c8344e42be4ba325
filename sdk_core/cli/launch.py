"""``sdk launch``: start a data-parallel job's workers on this node."""

from __future__ import annotations

import argparse

from .common import counting


def launch(args: argparse.Namespace) -> int:
    """``sdk launch ... -- COMMAND``: run COMMAND as every worker of the job on this node."""
    from ..distributed.launch import Job, launch

    job = Job(args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr, args.master_port, args.timeout)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.launcher == "ray":
        from ..distributed.ray import launch_ray

        return launch_ray(command, job)
    return launch(command, job)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``launch``."""
    p = sub.add_parser(
        "launch",
        help="start a data-parallel job's workers on this node",
        description="run COMMAND (after --) as the workers of a data-parallel job: "
        "sdk launch --nproc-per-node 2 -- sdk train --framework torch",
    )
    p.add_argument("--nproc-per-node", type=counting(1), default=1, help="workers on this node (default: 1)")
    p.add_argument("--nnodes", type=counting(1), default=1, help="nodes in the job (default: 1)")
    p.add_argument("--node-rank", type=counting(0), default=0, help="this node's rank (default: 0)")
    p.add_argument("--master-addr", default="127.0.0.1", help="address of the node running rank 0")
    p.add_argument("--master-port", type=counting(1), default=None, help="port of rank 0 (default: a free port)")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a collective may wait for a rank (default: 120)"
    )
    p.add_argument(
        "--launcher",
        default="local",
        choices=("local", "ray"),
        help="local processes (default), or Ray tasks on the cluster at RAY_ADDRESS (a local Ray if none)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command every worker runs")
    p.set_defaults(func=launch)
