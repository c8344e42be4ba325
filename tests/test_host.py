"""The host allocator setting (sdk_core.runtime.host): freed activation-sized blocks stay in
the heap for the next step instead of being unmapped and faulted in again. Each case runs in
its own process, since malloc's settings are process-wide."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# three 4 MiB blocks allocated and freed per "step": above glibc's default trim threshold once
# its dynamic mmap threshold has adapted, so every step faults its pages in again
STEPS = """
import json, resource, sys
import numpy as np
from sdk_core.runtime import host

done = host.keep_freed_blocks() if sys.argv[1] == "set" else None
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(20):
    if i == 10:
        start = faults()
    blocks = [np.ones(2**20, np.float32) for _ in range(3)]
    del blocks
print(json.dumps({"done": done, "faults": (faults() - start) / 10}))
"""


def _steps(mode: str, **env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STEPS), mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout)


def test_freed_blocks_are_reused_without_page_faults():
    default, kept = _steps("leave"), _steps("set")
    assert kept["done"] is True
    assert default["faults"] > 500  # 3 x 1024 pages unless the heap kept some
    assert kept["faults"] < 50


def test_the_users_choice_is_left_alone():
    assert _steps("set", SDK_HOST_MALLOC="default")["done"] is False
    assert _steps("set", MALLOC_TRIM_THRESHOLD_="131072")["done"] is False


@pytest.mark.needs_framework("numpy")
def test_training_on_the_cpu_sets_it():
    script = textwrap.dedent(
        """
        from sdk_core import Stack, zoo
        from sdk_core.runtime import host
        stack = Stack("numpy").build(zoo.get("mlp"), seed=0)
        assert host.keep_freed_blocks.cache_info().currsize == 0
        stack.train_step()
        print(host.keep_freed_blocks.cache_info().currsize, host.keep_freed_blocks())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1 True"
