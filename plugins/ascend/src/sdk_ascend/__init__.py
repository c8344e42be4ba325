"""sdk-ascend: Huawei Ascend NPUs for sdk_core, found through the driver's ``npu-smi`` tool
and /dev/davinci<N>. Imports no framework; a machine without NPUs reports no devices."""

from __future__ import annotations

import glob
import os

from sdk_core import DeviceInfo, MemoryReading, PowerReading, hookimpl

__version__ = "0.2.0"

SDK_CORE_API = 1


def driver_present() -> bool:
    """Device files or the driver's tool: without either there is no NPU to parse for."""
    on_path = any(
        os.access(os.path.join(d, "npu-smi"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep) if d
    )
    return on_path or bool(glob.glob("/dev/davinci[0-9]*"))


@hookimpl
def sdk_probe_devices() -> list[DeviceInfo]:
    if not driver_present():
        return []
    from ._smi import probe

    return probe()


@hookimpl
def sdk_read_memory(device: DeviceInfo) -> MemoryReading | None:
    if device.kind != "npu":
        return None
    from ._smi import chip_now

    chip = chip_now(device.index)
    if chip is None or chip.hbm_used is None:
        return None
    return MemoryReading(used=chip.hbm_used, total=chip.hbm_total, source="npu-smi HBM")


@hookimpl
def sdk_read_power(device: DeviceInfo) -> PowerReading | None:
    if device.kind != "npu":
        return None
    from ._smi import chip_now

    chip = chip_now(device.index)
    if chip is None or chip.power_w is None:
        return None
    return PowerReading(energy_j=None, power_w=chip.power_w, source="npu-smi")
