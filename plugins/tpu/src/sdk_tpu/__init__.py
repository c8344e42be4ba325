"""sdk-tpu: Google Cloud TPU chips for sdk_core, found from the TPU VM's PCI devices, device
files and environment. Imports no framework; a machine without TPUs reports no devices."""

from __future__ import annotations

import glob
import os

from sdk_core import DeviceInfo, hookimpl

__version__ = "0.2.0"

SDK_CORE_API = 1


def tpu_vm() -> bool:
    """TPU VMs expose chips as /dev/accel* or /dev/vfio/<N> and set TPU_ACCELERATOR_TYPE; a
    machine with none of them is not one, and the PCI scan is skipped."""
    return bool(
        os.environ.get("TPU_ACCELERATOR_TYPE") or glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*")
    )


@hookimpl
def sdk_probe_devices() -> list[DeviceInfo]:
    if not tpu_vm():
        return []
    from ._detect import probe

    return probe()
