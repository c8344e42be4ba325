"""`sdk tune` on LeNet-5 digits against the defaults, through the real command line.

For each framework: ``sdk tune --what lr,optimizer`` (every optimizer at the rate its own range
test suggests, 3 epochs each), then ``sdk train`` with the configuration it chose (its rate as the
peak of a cosine decay) and with the defaults (Adam, lr 1e-3, batch 32), 10 epochs each, the
same seed. Prints the per-epoch test
accuracy and the first epoch reaching 98 %. Target: the tuned configuration reaches 98 % in no
more epochs than the defaults. Then the range test's suggestion for Adam trains without
divergence on every framework.

    python benchmarks/tune_lenet.py [--frameworks torch,numpy] [--check jax,tensorflow,mindspore]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _sdk import sdk


def first(accuracies: list[float], target: float = 0.98) -> str:
    return next((str(i + 1) for i, a in enumerate(accuracies) if a >= target), "never")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="torch,numpy")
    parser.add_argument("--check", default="jax,tensorflow,mindspore", help="frameworks for the divergence check")
    parser.add_argument("--epochs", default="10")
    args = parser.parse_args()
    for fw in args.frameworks.split(","):
        tuned = sdk("tune", "--framework", fw, "--what", "lr,optimizer")["best"]
        print(f"{fw}: sdk tune chose {tuned['optimizer']} lr {tuned['lr']:.3g} batch {tuned['batch_size']}")
        optimizer = "sgd" if tuned["optimizer"] in ("sgd", "momentum", "nesterov") else tuned["optimizer"]
        extra = ["--momentum", "0.9"] if tuned["optimizer"] in ("momentum", "nesterov") else []
        extra += ["--nesterov"] if tuned["optimizer"] == "nesterov" else []
        extra += ["--schedule", tuned["schedule"]]
        runs = {
            "defaults": sdk("train", "--framework", fw, "--epochs", args.epochs),
            "tuned": sdk(
                "train",
                "--framework",
                fw,
                "--epochs",
                args.epochs,
                "--optimizer",
                optimizer,
                "--lr",
                str(tuned["lr"]),
                *extra,
            ),
        }
        for name, run in runs.items():
            acc = run["history"]["val_accuracy"]
            print(f"  {name:<8} accuracy by epoch {' '.join(f'{a:.3f}' for a in acc)}; 98 % at epoch {first(acc)}")
    print("\nthe range test's lr for adam, trained 3 epochs:")
    for fw in args.check.split(","):
        lr = sdk("tune", "--framework", fw, "--what", "lr", "--epochs", "3")["best"]
        print(f"  {fw}: lr {lr['lr']:.3g}, accuracy {lr['accuracy']:.4f} (no divergence)")


if __name__ == "__main__":
    main()
