"""sdk-tpu: Google Cloud TPU chips for sdk_core, found from the TPU VM's PCI devices, device
files and environment. Imports no framework; a machine without TPUs reports no devices."""
from __future__ import annotations

from sdk_core import DeviceInfo, hookimpl

SDK_CORE_API = 1


@hookimpl
def sdk_probe_devices() -> list[DeviceInfo]:
    from ._detect import probe

    return probe()
