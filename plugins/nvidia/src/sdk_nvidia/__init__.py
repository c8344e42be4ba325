"""sdk-nvidia: NVIDIA GPUs for sdk_core, probed through NVML (nvidia-ml-py). Imports no
deep-learning framework; a machine without an NVIDIA driver reports no devices."""

from __future__ import annotations

import os

from sdk_core import DeviceInfo, MemoryReading, PowerReading, hookimpl

__version__ = "0.2.0"

SDK_CORE_API = 1


def driver_present() -> bool:
    """The NVIDIA kernel driver shows itself in /proc and /dev (containers with GPUs included;
    /dev/dxg under WSL2); without it there is nothing for NVML to find, so pynvml is not even
    imported."""
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg"))


@hookimpl
def sdk_probe_devices() -> list[DeviceInfo]:
    if not driver_present():
        return []
    from ._nvml import probe

    return probe()


@hookimpl
def sdk_read_memory(device: DeviceInfo) -> MemoryReading | None:
    if device.kind != "cuda":
        return None
    from ._nvml import memory

    return memory(device.index)


@hookimpl
def sdk_read_power(device: DeviceInfo) -> PowerReading | None:
    if device.kind != "cuda":
        return None
    from ._nvml import power

    return power(device.index)
