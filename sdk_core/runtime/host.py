"""The host's memory allocator, set once per process for training on the CPU.

glibc's malloc serves a block above its mmap threshold (128 KiB, raised as large blocks are
freed) with freshly mapped pages and unmaps it when it is freed. A training step allocates and
frees the same activation-sized blocks every step, so with the default the kernel maps, zeroes
and unmaps them over and over: a ResNet-8 epoch on digits in torch took 20,000 to 100,000
minor page faults, changing from run to run, and was 3-7 % slower for it. Fixing the mmap
threshold at glibc's largest (32 MiB) and raising the trim threshold keeps such blocks in the
heap for the next step, as a GPU framework's caching allocator does with device memory.

It changes the whole process's malloc, so it is skipped where glibc is not the C library,
where the user tuned malloc through ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``,
and when ``SDK_HOST_MALLOC=default`` asks to leave it alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest on 64-bit hosts
TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def keep_freed_blocks() -> bool:
    """Set glibc's thresholds, once a process; True when this module set them."""
    env = os.environ
    if env.get("SDK_HOST_MALLOC") == "default" or "MALLOC_MMAP_THRESHOLD_" in env or "MALLOC_TRIM_THRESHOLD_" in env:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):  # glibc only
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
