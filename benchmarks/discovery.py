"""Discovery cost: wall time of ``sdk devices`` with every installed plugin, as a ratio to
``python -c "import pluggy, numpy"`` (the floor any sdk_core command pays). Goal: <= 1.5.

Each repeat runs both commands as fresh processes, alternating which goes first; the figures
are medians. Both read compiled bytecode, as after ``pip install`` (which compiles it): the
commands run with a private ``PYTHONPYCACHEPREFIX`` filled by an untimed first run, so an
editable install or ``PYTHONDONTWRITEBYTECODE=1`` does not charge compilation to sdk_core.
``--as-is`` keeps the caller's environment instead.

    python benchmarks/discovery.py [--repeats 11] [--as-is]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

GOAL = 1.5
# the `sdk` console script next to this interpreter, as a user runs it (else python -m sdk_core)
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "sdk")
SDK = [_SCRIPT] if os.access(_SCRIPT, os.X_OK) else [sys.executable, "-m", "sdk_core"]
DEVICES = SDK + ["devices"]
BASELINE = [sys.executable, "-c", "import pluggy, numpy"]


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def measure(repeats: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    wall(DEVICES, env), wall(BASELINE, env)  # untimed: fills the bytecode and file caches
    devices: list[float] = []
    baseline: list[float] = []
    for r in range(repeats):
        pair = [(devices, DEVICES), (baseline, BASELINE)]
        for times, cmd in pair if r % 2 else pair[::-1]:
            times.append(wall(cmd, env))
    return devices, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--as-is", action="store_true", help="keep the environment's bytecode settings")
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="sdk-pycache-") as cache:
        if not args.as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        plugins = json.loads(
            subprocess.run(SDK + ["plugins", "--json"], check=True, env=env, capture_output=True, text=True).stdout
        )
        devices, baseline = measure(args.repeats, env)
    d, b = statistics.median(devices), statistics.median(baseline)
    print("plugins: " + ", ".join(f"{p['name']} ({p['status']})" for p in plugins))
    print(f"bytecode: {'as the environment has it' if args.as_is else 'compiled (as installed)'}")
    print(
        f"sdk devices                       {d * 1e3:7.1f} ms  (median of {args.repeats}, "
        f"{min(devices) * 1e3:.1f}-{max(devices) * 1e3:.1f})"
    )
    print(
        f"python -c 'import pluggy, numpy'  {b * 1e3:7.1f} ms  (median of {args.repeats}, "
        f"{min(baseline) * 1e3:.1f}-{max(baseline) * 1e3:.1f})"
    )
    print(f"ratio {d / b:.2f} (goal <= {GOAL}): {'met' if d / b <= GOAL else 'over the goal'}")


if __name__ == "__main__":
    main()
