"""Finding Cloud TPU chips from the VM's PCI devices, device files and environment.

A TPU VM exposes each chip as a PCI function of Google's vendor id 0x1ae0 (device id by
generation), as /dev/accel<N> (v2-v4) or /dev/vfio/<N> (v5e and later), and the runtime sets
``TPU_ACCELERATOR_TYPE`` (e.g. ``v4-8``, ``v5litepod-4``). Figures per chip come from Google
Cloud's published TPU system architecture pages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import attrs

from sdk_core import DeviceInfo

GOOGLE = "0x1ae0"
GiB = 2**30


@attrs.frozen
class Chip:
    name: str
    hbm: int
    bf16_flops: float
    tensorcores: int


CHIPS = {
    "v2": Chip("TPU v2", 16 * GiB, 45e12, 2),
    "v3": Chip("TPU v3", 32 * GiB, 123e12, 2),
    "v4": Chip("TPU v4", 32 * GiB, 275e12, 2),
    "v5e": Chip("TPU v5e", 16 * GiB, 197e12, 1),
    "v5p": Chip("TPU v5p", 95 * GiB, 459e12, 2),
    "v6e": Chip("TPU v6e (Trillium)", 32 * GiB, 918e12, 1),
}
PCI_IDS = {"0x005e": "v4", "0x0063": "v5e", "0x0062": "v5p", "0x006f": "v6e"}
V2_V3 = {"0x004e": "v2", "0x004f": "v3"}  # both are device 0x0027, told apart by subsystem_device
ACCELERATOR_TYPES = {"v2": "v2", "v3": "v3", "v4": "v4", "v5litepod": "v5e", "v5e": "v5e", "v5p": "v5p", "v6e": "v6e"}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _generation(dev: Path) -> str | None:
    if _read(dev / "device") == "0x0027":
        return V2_V3.get(_read(dev / "subsystem_device"))
    return PCI_IDS.get(_read(dev / "device"))


def pci_chips(root: Path) -> list[str]:
    """Generation of every Google TPU PCI function, in bus order."""
    found = []
    for dev in sorted((root / "sys/bus/pci/devices").glob("*")):
        if _read(dev / "vendor") == GOOGLE and (generation := _generation(dev)):
            found.append(generation)
    return found


def generation_from_env(env: Mapping[str, str]) -> str | None:
    kind = env.get("TPU_ACCELERATOR_TYPE") or env.get("ACCELERATOR_TYPE") or ""
    match = re.match(r"(v\d+[a-z]*)", kind.lower())
    return ACCELERATOR_TYPES.get(match.group(1)) if match else None


def device_files(root: Path) -> list[Path]:
    accel = sorted((root / "dev").glob("accel[0-9]*"))
    vfio = sorted(p for p in (root / "dev/vfio").glob("[0-9]*")) if (root / "dev/vfio").is_dir() else []
    return accel or vfio


def probe(root: str | Path = "/", env: Mapping[str, str] | None = None) -> list[DeviceInfo]:
    root, env = Path(root), os.environ if env is None else env
    chips = pci_chips(root)
    files = device_files(root)
    generation = (chips[0] if chips else None) or generation_from_env(env)
    count = len(chips) or (len(files) if generation else 0)
    if not count or generation is None:
        return []
    chip = CHIPS[generation]
    return [
        DeviceInfo(
            kind="tpu",
            index=i,
            vendor="Google",
            name=chip.name,
            memory_total=chip.hbm,
            compute_units=chip.tensorcores,
            peak_flops={"bfloat16": chip.bf16_flops},
            driver=env.get("TPU_ACCELERATOR_TYPE", ""),
            extra={
                "generation": generation,
                "device_file": str(files[i]) if i < len(files) else "",
                "worker": env.get("TPU_WORKER_ID", ""),
                "source": "PCI ids" if chips else "TPU_ACCELERATOR_TYPE and device files",
            },
        )
        for i in range(count)
    ]
