"""Compression targets (issue: model compression), through the real command line.

For LeNet-5 and the MLP on digits: ``sdk train`` saves float32 safetensors, ``sdk compress``
writes a ``.sdkz`` (LeNet-5 with no option but --weights/--out: the defaults; the MLP with
--prune 0.95), and ``sdk predict`` serves the file with every installed framework. Prints the
size ratio, accuracy before/after, the sparsity, the coders' sizes and each framework's
accuracy; then structured pruning's measured inference-time ratio (slim / original, interleaved
pairs on one stack) and the int8 simulation's accuracy.

Targets: LeNet-5 >= 20x (Deep Compression reached 39x), MLP >= 30x, accuracy at most 1 point
lower, every framework within 0.1 point of the others.

    python benchmarks/compression.py [--framework torch] [--frameworks numpy,torch,jax,tensorflow,mindspore]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _sdk import sdk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default="torch", help="the framework that trains and compresses")
    parser.add_argument("--frameworks", default="numpy,torch,jax,tensorflow,mindspore", help="frameworks that serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for model, extra, ratio_goal in (("lenet5", [], 20), ("mlp", ["--prune", "0.95"], 30)):
            weights, out = d / f"{model}.safetensors", d / f"{model}.sdkz"
            sdk("train", "--model", model, "--framework", args.framework, "--out", str(weights))
            r = sdk("compress", "--weights", str(weights), "--out", str(out), "--framework", args.framework, *extra)
            drop = 100 * (r["accuracy_before"] - r["accuracy_after"])
            print(
                f"{model}: {r['bytes_before']:,} -> {r['bytes_after']:,} bytes, ratio {r['compression_ratio']:.1f} "
                f"(goal >= {ratio_goal}), sparsity {r['sparsity']:.3f}, accuracy {r['accuracy_before']:.4f} -> "
                f"{r['accuracy_after']:.4f} (drop {drop:.2f} pt, goal <= 1)"
            )
            print(f"  streams: {', '.join(f'{k} {v:,} bytes' for k, v in r['coders'].items())} (smallest kept)")
            served = {
                fw: sdk("predict", "--weights", str(out), "--framework", fw)["accuracy"]
                for fw in args.frameworks.split(",")
            }
            spread = 100 * (max(served.values()) - min(served.values()))
            print("  served: " + ", ".join(f"{fw} {a:.4f}" for fw, a in served.items()) + f" (spread {spread:.2f} pt)")
        weights = d / "lenet5.safetensors"
        s = sdk(
            "compress",
            "--weights",
            str(weights),
            "--out",
            str(d / "slim.sdkz"),
            "--framework",
            args.framework,
            "--structured",
            "0.5",
            "--prune",
            "0",
            "--no-share",
            "--finetune-epochs",
            "8",
        )["structured"]
        lat = s["latency_ratio"]
        print(
            f"structured 0.5 (lenet5): {s['params_before']:,} -> {s['params_after']:,} parameters, inference time "
            f"ratio {lat['median']:.2f} (min {lat['min']:.2f}, max {lat['max']:.2f}) slim/original"
        )
        q = sdk(
            "compress",
            "--weights",
            str(weights),
            "--out",
            str(d / "q.sdkz"),
            "--framework",
            args.framework,
            "--quantize",
            "int8",
            "--calibration",
            "percentile",
        )
        print(
            f"int8 (lenet5, pruned): ratio {q['compression_ratio']:.1f}, accuracy {q['accuracy_before']:.4f} -> "
            f"{q['accuracy_after']:.4f} with int8 activations simulated "
            f"({q['accuracy_weights_only']:.4f} with int8 weights only)"
        )


if __name__ == "__main__":
    main()
