"""Per-device memory of the JAX plugin's sharded step: the zoo GPT trained with Adam (global
batch 32) on 1, 2 and 4 virtual CPU devices (``--xla_force_host_platform_device_count``, one
process), for each ZeRO stage. "live" is what the devices hold between steps: the bytes of
``jax.live_arrays()`` per device (their ``addressable_shards``), largest device, after one step
(weights, optimizer state, the batch; the gradients and activations of a step are gone by
then, and the CPU has no ``memory_stats()`` for the peak). Beside it ``sdk_core.model.estimate
.sharded_memory``: its weights + optimizer state (what "live" measures) and its total (with the
gradients, gathered-layer buffer, unsharded gradients, communication buffers and activations of
the step: inside the jitted step they are XLA's temporaries, which no live array shows).

    python benchmarks/sharded_jax.py [--devices 1,2,4] [--batch 32]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

MEASURE = """
import gc, json, sys
import jax
from sdk_core import Optimizer, Stack, zoo
from sdk_core.plugins.requests import StepRequest, World
from sdk_core.testing.cases import inputs, targets

batch, out = int(sys.argv[1]), {}
spec = zoo.gpt()
x, y = inputs(spec, batch, seed=3), targets(spec, "cross_entropy", batch, seed=4)
for stage in (1, 2, 3):
    stack = Stack("jax").build(spec)
    request = StepRequest("jax", stack.model, spec, stack.device, "cross_entropy", Optimizer("adam", lr=0.01),
                          world=World(0, 1), zero=stage)
    step = stack.manager.make_train_step(request)
    float(step(x, y))
    gc.collect()
    held = {}
    for array in jax.live_arrays():
        for shard in array.addressable_shards:
            held[shard.device.id] = held.get(shard.device.id, 0) + shard.data.nbytes
    out[stage] = max(held.values())
    del stack, step, request
    gc.collect()
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    from sdk_core import zoo
    from sdk_core.model import estimate

    spec = zoo.gpt()
    print("devices  stage   live/device  estimate weights+optimizer  estimate total  live/estimate")
    for n in map(int, args.devices.split(",")):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(args.batch)], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        live = json.loads(done.stdout.splitlines()[-1])
        for stage in (1, 2, 3):
            parts = estimate.sharded_memory(spec, args.batch, n, f"zero{stage}", optimizer="adam")
            state = parts["weights"] + parts["optimizer_state"]
            measured = live[str(stage)]
            print(
                f"{n:>7}  zero{stage}  {measured:>11,}  {state:>26,}  {parts['total']:>14,}  {measured / state:>13.2f}"
            )
        gc.collect()


if __name__ == "__main__":
    main()
