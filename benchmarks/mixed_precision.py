"""Mixed precision against float32: LeNet-5 on the digits through ``sdk train`` for every
framework that declares bf16 / fp16, same seed and settings. Prints the test accuracy, its
difference to float32 (target: within 0.5 point), the updates fp16 loss scaling skipped and
the training time.

    python benchmarks/mixed_precision.py [--frameworks torch,jax,tensorflow] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import sdk_core

sys.path.insert(0, str(Path(__file__).parent))
from _sdk import sdk


def train(framework: str, precision: str, epochs: int) -> tuple[dict, float]:
    t0 = time.perf_counter()
    result = sdk("train", "--framework", framework, "--epochs", str(epochs), "--precision", precision)
    return result, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="torch,jax,tensorflow")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    frameworks = sdk_core.get_manager().frameworks()
    print("framework   precision  accuracy  vs fp32   skipped  seconds")
    for name in args.frameworks.split(","):
        info = frameworks[name]
        base = None
        for precision in ("fp32", "bf16", "fp16"):
            if f"precision:{precision}" in info.unsupported:
                print(f"{name:<11} {precision:<9}  declared unsupported by the plugin")
                continue
            result, seconds = train(name, precision, args.epochs)
            accuracy = result["test"]["accuracy"]
            base = accuracy if base is None else base
            delta = (accuracy - base) * 100
            skipped = result["skipped_steps"]
            print(f"{name:<11} {precision:<9}  {accuracy:.4f}    {delta:+.2f} pt  {skipped:>7}  {seconds:7.1f}")


if __name__ == "__main__":
    main()
