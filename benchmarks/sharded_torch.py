"""Sharded torch training (FSDP2 under ``Sharded``) on loopback with gloo, on the CPU.

1. Overhead: with 2 processes, the SDK's ZeRO stage 3 step (``Stack("torch").build(gpt)``,
   its ``train_step`` with ``Sharded(3)``) against a hand-written FSDP2 loop over the same
   torch module and weights (``fully_shard`` per transformer block, then the root, on an
   explicit gloo DeviceMesh; forward, cross-entropy, backward, Adam). Same batch, same
   optimizer, both in the same processes. Interleaved pairs (each: ``--steps`` steps of each,
   alternating which goes first) give one SDK/hand ratio each; the report is their median and
   lowest..highest.
2. Memory: the GPT trained at 1, 2 and 4 processes, ZeRO stage 1/2/3, each run in fresh
   processes; per rank the peak RSS (``ru_maxrss``) at the end less the RSS after the imports
   (psutil), the largest rank shown, beside ``sdk_core.model.estimate.sharded_memory`` for
   the same settings (fp32, Adam, the global batch). "Empty" runs (a GPT of a few hundred
   parameters through the same code) measure the fixed cost of a process. Beside it torch's
   CPU allocator total (the profiler's, from before the build) at its peak during the last step.
3. Scaling: the step time of stage 3 at 1, 2 and 4 processes, the same global batch.

    python benchmarks/sharded_torch.py [--steps 10 --pairs 5]

Each process runs ``cpu_count // processes`` intra-op threads (at least 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

# zoo.gpt(vocab, context, width, heads, blocks) and the global batch
TIME_GPT, TIME_BATCH = (256, 64, 128, 4, 4), 16
MEMORY_GPT, MEMORY_BATCH = (2048, 64, 256, 4, 4), 8
EMPTY_GPT = (8, 8, 8, 1, 1)
MEMORY_STEPS = 3
WARMUP = 2
LAST = "sdk-benchmark-last-step"  # the profiled range of the last memory step


def _shard(x, rank: int, size: int):
    """This rank's share of the global batch ``x`` (what ArrayData gives it)."""
    return x[rank * len(x) // size : (rank + 1) * len(x) // size]


def allocator(prof) -> tuple[int, int]:
    """The bytes of torch's CPU allocator that the profiler saw allocated and not yet freed, when
    the step :data:`LAST` began and at their most during it. The profiler sees the threads it
    profiles: a block that another thread (gloo's) frees is taken as freed when a later
    allocation reuses its address."""
    from torch._C._profiler import _EventType

    events, last, nodes = [], (0, 0), list(prof.profiler.kineto_results.experimental_event_tree())
    while nodes:
        node = nodes.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.ptr, node.extra_fields.alloc_size))
        elif node.name == LAST:
            last = (node.start_time_ns, node.end_time_ns)
        nodes.extend(node.children)
    live: dict[int, int] = {}
    current = held = peak = 0
    for at, ptr, size in sorted(events):
        current -= live.pop(ptr, 0)  # a free, or an address reused after an unseen free
        if size > 0:
            live[ptr] = size
            current += size
        if at < last[0]:
            held = peak = current
        elif at <= last[1]:
            peak = max(peak, current)
    return held, peak


def worker(mode: str, args: argparse.Namespace) -> None:
    """One rank of a job (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set by :func:`job`);
    rank 0 (every rank for "memory", "allocator" and "empty") prints one JSON line."""
    import resource

    import psutil
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from sdk_core import Optimizer, Sharded, Stack, zoo
    from sdk_core.model.data import make_batch
    from sdk_torch import _runtime  # noqa: F401  (the plugin's modules, imported before the baseline)
    from sdk_torch._layers import TransformerBlock

    rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    optimizer = Optimizer("adam", lr=1e-3)
    measured = {"memory": MEMORY_GPT, "allocator": MEMORY_GPT, "empty": EMPTY_GPT}
    gpt, batch = (measured[mode], MEMORY_BATCH) if mode in measured else (TIME_GPT, TIME_BATCH)
    spec = zoo.gpt(*gpt)
    x, y = make_batch(spec, "cross_entropy", batch, seed=3)
    x, y = _shard(x, rank, size), _shard(y, rank, size)
    base = psutil.Process().memory_info().rss  # after the imports and the batch

    # "allocator": torch's allocator profiled from before the build, so that every tensor the
    # step holds is counted (DDP's buckets, FSDP's buffers), its peak taken over the last step;
    # "memory" and "empty": the RSS, in processes the profiler's records do not grow
    profiling = mode == "allocator"
    cpu = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=cpu, profile_memory=True) if profiling else contextlib.nullcontext() as prof:
        stack = Stack("torch").build(spec, seed=1)
        world, sharded = stack._join(Sharded(args.stage) if size > 1 else None)
        sdk = stack.train_step("cross_entropy", optimizer, 1, "fp32", False, world, sharded)
        if mode in measured:
            for _ in range(MEMORY_STEPS - 1):
                float(sdk(x, y))
            with torch.profiler.record_function(LAST):
                float(sdk(x, y))
    if profiling:
        held, top = allocator(prof)
        print(json.dumps({"rank": rank, "held": held, "allocator": top}), flush=True)
        return
    if mode in measured:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        print(json.dumps({"rank": rank, "growth": peak - base}), flush=True)
        return

    def timed(step, steps: int) -> float:
        """Seconds for ``steps`` steps, the slowest rank's."""
        if size > 1:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        if size > 1:
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        return float(seconds)

    def sdk_step() -> float:
        return float(sdk(x, y))

    if mode == "scale":
        for _ in range(WARMUP):
            sdk_step()
        per_step = [timed(sdk_step, args.steps) / args.steps for _ in range(args.pairs)]
        if rank == 0:
            print(json.dumps({"per_step": per_step}), flush=True)
        return

    # mode "pairs": the hand-written loop on the same module and weights, unsharded
    module = Stack("torch").build(spec, seed=1).model.module
    mesh = init_device_mesh("cpu", (size,), mesh_dim_names=("dp",))
    for block in module.modules():
        if isinstance(block, TransformerBlock):
            fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)
    module.train()
    adam = torch.optim.Adam(
        module.parameters(),
        lr=optimizer.lr,
        betas=(optimizer.beta1, optimizer.beta2),
        eps=optimizer.eps,
        weight_decay=optimizer.weight_decay,
    )
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)

    def hand_step() -> float:
        out = module(inputs)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1))
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return loss.item()

    # the first step of each from the same weights: the same global loss (equal shards)
    first_sdk = sdk_step()
    first_hand = torch.tensor([hand_step()])
    dist.all_reduce(first_hand)
    for _ in range(WARMUP - 1):
        sdk_step(), hand_step()
    ratios = []
    for i in range(args.pairs):
        if i % 2:
            hand = timed(hand_step, args.steps)
            ours = timed(sdk_step, args.steps)
        else:
            ours = timed(sdk_step, args.steps)
            hand = timed(hand_step, args.steps)
        ratios.append((ours / args.steps, hand / args.steps))
    if rank == 0:
        print(json.dumps({"pairs": ratios, "first": [first_sdk, float(first_hand) / size]}), flush=True)


def job(mode: str, n: int, args: argparse.Namespace, stage: int = 3) -> list[dict]:
    """``mode`` as ``n`` processes of a job on loopback (one process: no job): the JSON line
    each rank printed (tests/test_sharded_torch.py launches its jobs the same way)."""
    from sdk_core.distributed.launch import free_port

    argv = [sys.executable, __file__, "--worker", mode, "--stage", str(stage)]
    argv += ["--steps", str(args.steps), "--pairs", str(args.pairs)]
    env = {**os.environ, "SDK_DIST_TIMEOUT": "120"}
    if n > 1:
        env.update(WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    procs = [
        subprocess.Popen(
            argv,
            env={**env, "RANK": str(r)} if n > 1 else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(n)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]  # read while they run: a full pipe blocks a rank
    lines = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        if p.returncode:
            raise SystemExit(f"{mode} on {n} processes failed (exit {p.returncode}): {err.strip()[-2000:]}")
        lines += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def overhead(args: argparse.Namespace) -> None:
    (got,) = job("pairs", 2, args)
    ratios = sorted(ours / hand for ours, hand in got["pairs"])
    sdk_ms = statistics.median(o for o, _ in got["pairs"]) * 1e3
    hand_ms = statistics.median(h for _, h in got["pairs"]) * 1e3
    print(
        f"1. SDK ZeRO-3 against hand-written FSDP2, 2 processes, zoo.gpt{TIME_GPT}, global batch {TIME_BATCH}, Adam\n"
        f"   first step's global loss: SDK {got['first'][0]:.6f}, hand {got['first'][1]:.6f}\n"
        f"   {len(ratios)} interleaved pairs of {args.steps} steps each\n"
        f"   median step: SDK {sdk_ms:.1f} ms, hand {hand_ms:.1f} ms\n"
        f"   SDK/hand ratio: median {statistics.median(ratios):.3f} ({ratios[0]:.3f}..{ratios[-1]:.3f}); "
        f"target <= 1.05\n"
        "   (per pair: " + ", ".join(f"{r:.3f}" for r in (ours / hand for ours, hand in got["pairs"])) + ")\n"
        "   differences in the work: both wrap each transformer block, then the root, with fully_shard;\n"
        "   the SDK step also all-reduces the shard sizes and the loss (two small collectives a step, so\n"
        "   that uneven shards weigh right and the loss returned is the global batch's) and converts the\n"
        "   numpy batch each step.\n"
    )


def memory(args: argparse.Namespace) -> None:
    from sdk_core import zoo
    from sdk_core.model.estimate import sharded_memory

    spec = zoo.gpt(*MEMORY_GPT)
    print(
        f"2. Per-rank peak memory against sharded_memory: zoo.gpt{MEMORY_GPT} "
        f"({spec.param_count(False):,} parameters),\n"
        f"   global batch {MEMORY_BATCH}, fp32, Adam, {MEMORY_STEPS} steps, CPU.\n"
        "   measured = peak RSS growth of a rank: ru_maxrss at the end less psutil's RSS after the imports\n"
        "   (torch, sdk_core, sdk_torch) and the batch; the largest rank. CPU RSS includes the framework's\n"
        "   own fixed cost per process (kernels' workspaces, the allocator's arenas, gloo's buffers and\n"
        "   threads, freed blocks glibc keeps), which the estimate leaves out; empty = the same run with\n"
        f"   zoo.gpt{EMPTY_GPT} (a few hundred parameters). allocator, in other processes of the same run:\n"
        "   torch's CPU allocator total (torch.profiler with profile_memory from before the build:\n"
        "   every tensor the rank allocated, DDP's buckets and FSDP's buffers included, less those freed),\n"
        "   held = at the start of the last step, peak = its most during the last step. The profiler does\n"
        "   not see frees on gloo's worker threads: a temporary of a gloo collective that its thread frees\n"
        "   stays counted until its address is reused, so a rank can read high (lowest..highest rank).\n"
    )
    empty = {n: max(r["growth"] for r in job("empty", n, args)) for n in (1, 2, 4)}
    print(
        "   empty-model RSS growth (stage 3 at 2 and 4): "
        + ", ".join(f"{n} proc {mib(v)} MiB" for n, v in empty.items())
    )
    print(
        "   procs  stage  estimate MiB  RSS MiB  RSS/est  RSS-empty(1)  /est  RSS-empty(same)  /est"
        "  alloc held MiB  alloc peak MiB  peak/est"
    )
    for n in (1, 2, 4):
        for stage in (1, 2, 3) if n > 1 else (3,):
            got = max(r["growth"] for r in job("memory", n, args, stage))
            ranks = job("allocator", n, args, stage)
            held = max(r["held"] for r in ranks)
            low, high = min(r["allocator"] for r in ranks), max(r["allocator"] for r in ranks)
            want = sharded_memory(spec, MEMORY_BATCH, n, f"zero{stage}", optimizer="adam")["total"]
            label = f"zero{stage}" if n > 1 else "any"
            less1, lessn = got - empty[1], got - empty[n]
            print(
                f"   {n:>5}  {label:>5}  {mib(want):>12}  {mib(got):>7}  {got / want:>7.2f}  {mib(less1):>12}"
                f"  {less1 / want:>4.2f}  {mib(lessn):>15}  {lessn / want:>4.2f}"
                f"  {mib(held):>14}  {mib(low) + '..' + mib(high):>14}  {low / want:.2f}..{high / want:.2f}"
            )
    print("   (one process trains without sharding: the stages are the same run there)\n")


def scaling(args: argparse.Namespace) -> None:
    print(
        f"3. Scaling, ZeRO stage 3, zoo.gpt{TIME_GPT}, global batch {TIME_BATCH} (1 process: ordinary training)\n"
        f"   this machine has {os.cpu_count()} cores: 2 processes share them, 4 processes oversubscribe them\n"
        "   (1 intra-op thread each): no speed-up from more compute is possible here. 1 process runs 2 intra-op\n"
        "   threads, which lose more than 2 single-threaded processes when other jobs load the cores.\n"
        "   procs  threads/proc  median s/step  (low..high)  samples/s  vs 1 proc"
    )
    base = None
    for n in (1, 2, 4):
        (got,) = job("scale", n, args)
        steps = sorted(got["per_step"])
        median = statistics.median(steps)
        base = base or median
        threads = max(1, (os.cpu_count() or 1) // n)
        print(
            f"   {n:>5}  {threads:>12}  {median:>13.4f}  ({steps[0]:.4f}..{steps[-1]:.4f})"
            f"  {TIME_BATCH / median:>9.1f}  {base / median:>8.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed run (default 10)")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs / timed runs (default 5)")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args)
    import torch

    print(f"torch {torch.__version__}, gloo on the CPU, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
    parts = {"1": overhead, "2": memory, "3": scaling}
    for part in args.parts.split(","):
        start = time.perf_counter()
        parts[part](args)
        print(f"   ({time.perf_counter() - start:.0f} s)\n")


if __name__ == "__main__":
    main()
