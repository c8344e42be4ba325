"""Out of memory, whichever framework ran out: real allocation failures (a subprocess under
``RLIMIT_AS``, a little above what it already maps) reach the user as ``DeviceOutOfMemory``
naming the device and the size, and the CLI says so in one line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from sdk_core import Dense, ModelSpec

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")

LIMIT = """
import resource, sys
def limit(head_gib):
    vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(head_gib * 2**30),) * 2)
"""


def limited(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run after :data:`LIMIT` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", LIMIT + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.needs_framework("numpy")
@pytest.mark.parametrize(
    ("width", "layers", "head_gib"),
    [
        (64, "[Dense(1_000_000)]", 0.4),  # 256 MB of float32 kernel after a 64-wide input
        (16, "[Dense(16), Dense(10_000_000)]", 1.0),  # 640 MB of float32 kernel after a 16-wide layer
    ],
)
def test_building_past_a_memory_limit_is_device_out_of_memory(width, layers, head_gib):
    out = limited(f"""
        from sdk_core import Dense, DeviceOutOfMemory, ModelSpec, Stack
        stack = Stack("numpy")
        limit({head_gib})
        try:
            stack.build(ModelSpec(({width},), {layers}))
        except DeviceOutOfMemory as exc:
            print("DeviceOutOfMemory:", exc)
        """)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert line.startswith("DeviceOutOfMemory: out of memory on cpu:0 while"), line
    assert "MiB" in line or "GiB" in line, line  # the size numpy said it could not allocate


@pytest.mark.needs_framework("numpy")
def test_cli_out_of_memory_is_one_line_without_a_traceback(tmp_path):
    spec = tmp_path / "wide.json"  # 90 M conv2d weights (10 M filters) and a 10 M-input dense: 440 MB
    spec.write_text(
        ModelSpec.from_dict(
            {
                "input_shape": [1, 3, 3],
                "layers": [
                    {"type": "conv2d", "filters": 10_000_000, "kernel_size": 3},
                    {"type": "flatten"},
                    {"type": "dense", "units": 1},
                ],
            }
        ).to_json()
    )
    argv = ["train", "--framework", "numpy", "--model", str(spec), "--epochs", "1"]
    out = limited(f"""
        from sdk_core.cli import main
        limit(0.7)  # the model (440 MB) fits once, its initial weights do not fit beside it
        sys.exit(main({argv!r}))
        """)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert lines[0].startswith("sdk: error: out of memory on cpu:0 while") and "MiB" in lines[0], lines


OOM = {  # a framework's own allocation of 2.56 GB, warmed up first so importing it is not limited
    "torch": ("import torch; torch.ones(3)", "torch.ones(640_000_000)"),
    "tensorflow": ("import tensorflow as tf; tf.ones(3)", "tf.ones(640_000_000).numpy()"),
    "jax": ("import jax.numpy as jnp; jnp.ones(3).block_until_ready()", "jnp.ones(640_000_000).block_until_ready()"),
    "mindspore": (
        "import mindspore as ms; from mindspore import ops; ops.ones((3,), ms.float32).asnumpy()",
        "ops.ones((640_000_000,), ms.float32).asnumpy()",
    ),
}


@pytest.mark.parametrize("framework", [pytest.param(f, marks=pytest.mark.needs_framework(f)) for f in sorted(OOM)])
def test_each_frameworks_allocation_failure_is_device_out_of_memory(framework):
    warm, allocate = OOM[framework]
    out = limited(f"""
        import json
        from sdk_core import DeviceOutOfMemory, Stack
        stack = Stack({framework!r})
        {warm}
        limit(1.5)
        try:
            with stack._memory("allocating a test tensor", 2_560_000_000):  # as every framework call is
                {allocate}
        except DeviceOutOfMemory as exc:
            print(json.dumps([str(exc), type(exc.__cause__).__name__]))
        """)
    assert out.returncode == 0, out.stderr[-3000:]
    message, cause = json.loads(out.stdout.strip().splitlines()[-1])
    assert message.startswith("out of memory on cpu:0 while allocating a test tensor"), message
    # the size the framework said it asked for, or where it does not say (MindSpore), the estimate
    assert "(it asked for 2560000000 bytes more)" in message or "(it asked for about 2.4 GiB more)" in message
    assert cause != "DeviceOutOfMemory"


def test_initial_weights_peak_at_their_own_size():
    spec = ModelSpec((16,), [Dense(16), Dense(10_000_000)])  # a 640 MB float32 kernel
    tracemalloc.start()
    try:
        weights = spec.init_weights(0, "float32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = sum(w.nbytes for w in weights.values())
    assert all(w.dtype == np.float32 for w in weights.values())
    assert size <= peak < size * 1.05, (peak, size)  # float64 first peaked at 3x the kernel


def test_initial_weights_are_the_same_numbers_in_any_dtype():
    """Drawn in chunks straight into the model's dtype, the values are the float64 draws cast
    once: a seed gives the same model as before, and float32 and float64 agree."""
    spec = ModelSpec((3,), [Dense(1_100_000), Dense(2)])  # a kernel over several chunks
    rng = np.random.default_rng(7)
    old = {}
    for p in spec.layout():
        if p.init == "glorot":
            bound = math.sqrt(6.0 / sum(p.fan))
            old[p.name] = rng.uniform(-bound, bound, p.shape)
        elif p.init == "normal":
            old[p.name] = rng.normal(0.0, 0.02, p.shape)
        else:
            old[p.name] = np.full(p.shape, 1.0 if p.init == "ones" else 0.0)
    for dtype in ("float32", "float64"):
        new = spec.init_weights(7, dtype)
        assert set(new) == set(old)
        for name, value in new.items():
            assert value.dtype == dtype and np.array_equal(value, old[name].astype(dtype)), name
