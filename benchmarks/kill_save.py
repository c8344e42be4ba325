"""Kill a process that is saving weights with SIGKILL, many times, and check that nothing is
lost: after every kill the target file is a complete, loadable file (the previous save or the
new one, never a torn one), and the next save leaves no temporary file behind.

    python benchmarks/kill_save.py [--kills 100] [--mib 16]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sdk_core import load_weights, save_weights

WRITER = """
import sys, numpy as np
from sdk_core import save_weights
path, mib = sys.argv[1], int(sys.argv[2])
n = mib * 2**20 // 4
generation = 0
print("ready", flush=True)
while True:
    generation += 1
    save_weights(path, {"w": np.full(n, generation, np.float32)}, {"generation": str(generation)})
"""


def kill_during_saves(directory: Path, kills: int, mib: int, seed: int = 0) -> dict[str, int]:
    """Run ``kills`` rounds; return counts of what each kill left behind."""
    rng = random.Random(seed)
    target = directory / "weights.safetensors"
    save_weights(target, {"w": np.zeros(mib * 2**20 // 4, np.float32)}, {"generation": "0"})
    counts = {"kills": 0, "temporaries_left_by_kill": 0, "torn": 0, "temporaries_after_next_save": 0}
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(mib)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        counts["kills"] += 1
        counts["temporaries_left_by_kill"] += sum(1 for p in directory.iterdir() if p.suffix == ".tmp")
        try:
            weights, meta = load_weights(target)
            generation = float(meta["generation"])
            if not (weights["w"] == generation).all():
                counts["torn"] += 1
        except Exception:
            counts["torn"] += 1
        save_weights(target, {"w": np.full(mib * 2**20 // 4, -1.0, np.float32)}, {"generation": "-1"})
        counts["temporaries_after_next_save"] += sum(1 for p in directory.iterdir() if p.suffix == ".tmp")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--mib", type=int, default=16, help="size of the saved weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdk-kill-") as directory:
        counts = kill_during_saves(Path(directory), args.kills, args.mib)
    print(
        f"{counts['kills']} kills: {counts['torn']} torn files, "
        f"{counts['temporaries_left_by_kill']} temporary files left by the kills, "
        f"{counts['temporaries_after_next_save']} left after the next save (goal: 0 torn, 0 after the next save)"
    )
    sys.exit(1 if counts["torn"] or counts["temporaries_after_next_save"] else 0)


if __name__ == "__main__":
    main()
