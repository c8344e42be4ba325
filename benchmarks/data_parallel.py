"""Data-parallel scaling: training samples per second of one process against ``sdk launch
--nproc-per-node 2`` (global batch the same), for each framework that declares
``data_parallel``. On a 2-core machine two processes share the cores that one process's
intra-op threads already used: expect no speed-up there; the figure shows the overhead.

    python benchmarks/data_parallel.py [--model lenet5] [--epochs 3] [--frameworks torch,jax]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sdk_core

sys.path.insert(0, str(Path(__file__).parent))
from _sdk import sdk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--frameworks", help="comma-separated names (default: every one that declares data_parallel)")
    args = parser.parse_args()
    frameworks = [f for f in sdk_core.get_manager().frameworks().values() if "data_parallel" in f.capabilities]
    if args.frameworks:
        frameworks = [f for f in frameworks if f.name in args.frameworks.split(",")]
    print("framework   processes  samples/s (epochs after the first)  final loss")
    for fw in frameworks:
        train = ["train", "--framework", fw.name, "--model", args.model, "--epochs", args.epochs]
        for n, argv in ((1, train), (2, ["launch", "--nproc-per-node", "2", "--", "sdk", *train])):
            result = sdk(*argv)
            seconds = result["history"]["seconds"][1:] or result["history"]["seconds"]
            samples = 1437  # the digits training split
            rate = samples * len(seconds) / sum(seconds)
            print(f"{fw.name:<11} {n:>9}  {rate:>12,.0f}                       {result['history']['loss'][-1]:.5f}")


if __name__ == "__main__":
    main()
