"""The `sdk` command line as the benchmarks run it: this Python's sdk_core, ``--json`` output
parsed, and a failure ending the benchmark with what the command printed."""

from __future__ import annotations

import json
import subprocess
import sys

SDK = [sys.executable, "-m", "sdk_core"]


def sdk(*args: str) -> dict:
    """``sdk ARGS --json`` parsed; a failing command stops the benchmark with its error."""
    result = subprocess.run([*SDK, *args, "--json"], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"sdk {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return json.loads(result.stdout)
