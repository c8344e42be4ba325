"""Finding Huawei Ascend NPUs: ``npu-smi info`` (the driver's tool) and /dev/davinci<N>.

``npu-smi info`` prints one two-row block per chip: NPU id, name, health, power (W) and
temperature (C), then chip id, bus id, AI Core use, memory and HBM use ("used / total" MB).
Peak figures per chip are the commonly quoted FP16 figures (910A and 310 from Huawei's
product pages; 910B1-B4 from widely cited figures, not confirmed against a datasheet here). A
name not in the table (e.g. the A3's plain "Ascend910") gets no figures rather than a guess.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import attrs

from sdk_core import DeviceInfo

MiB = 2**20


@attrs.frozen
class ChipSpec:
    ai_cores: int
    fp16_flops: float


CHIPS = {  # by the prefix of the name npu-smi prints
    "910B1": ChipSpec(24, 414e12),
    "910B2": ChipSpec(24, 376e12),
    "910B3": ChipSpec(20, 313e12),
    "910B4": ChipSpec(20, 280e12),
    "910A": ChipSpec(32, 256e12),
    "310P": ChipSpec(8, 70e12),
    "310": ChipSpec(2, 8e12),
}


@attrs.frozen
class Chip:
    npu: int
    chip: int
    name: str
    health: str
    power_w: float | None
    temperature_c: float | None
    bus_id: str
    hbm_used: int | None
    hbm_total: int | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _used_total(text: str) -> tuple[int | None, int | None]:
    match = re.match(r"\s*(\d+)\s*/\s*(\d+)", text)
    return (int(match.group(1)) * MiB, int(match.group(2)) * MiB) if match else (None, None)


def parse_info(text: str) -> list[Chip]:
    """Chips from the table ``npu-smi info`` prints."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|=")
    ]
    chips = []
    for first, second in itertools.pairwise(rows):
        head = first[0].split()
        if len(first) < 3 or len(head) < 2 or not head[0].isdigit() or len(second) < 3:
            continue
        if not second[1] or ":" not in second[1]:  # the second row carries the bus id
            continue
        values = first[2].split()
        # HBM is the last "used / total" pair; older chips print only the memory pair
        pairs = re.findall(r"\d+\s*/\s*\d+", second[2])
        used, total = _used_total(pairs[-1]) if pairs else (None, None)
        chip_id = second[0].split()[0] if second[0].split() else ""
        chips.append(
            Chip(
                npu=int(head[0]),
                chip=int(chip_id) if chip_id.isdigit() else 0,
                name=" ".join(head[1:]),
                health=first[1],
                power_w=_number(values[0]) if values else None,
                temperature_c=_number(values[1]) if len(values) > 1 else None,
                bus_id=second[1],
                hbm_used=used,
                hbm_total=total,
            )
        )
    return chips


def _spec(name: str) -> ChipSpec | None:
    for prefix, spec in CHIPS.items():  # longest prefixes first, as listed
        if name.replace("Ascend", "").strip().startswith(prefix):
            return spec
    return None


def describe(chips: list[Chip], version: str = "") -> list[DeviceInfo]:
    out = []
    for i, chip in enumerate(chips):
        spec = _spec(chip.name)
        free = chip.hbm_total - chip.hbm_used if chip.hbm_total is not None and chip.hbm_used is not None else None
        out.append(
            DeviceInfo(
                kind="npu",
                index=i,
                vendor="Huawei",
                name=chip.name if chip.name.startswith("Ascend") else f"Ascend {chip.name}",
                memory_total=chip.hbm_total,
                memory_free=free,
                compute_units=spec.ai_cores if spec else None,
                peak_flops={"float16": spec.fp16_flops} if spec else {},
                driver=version,
                extra={
                    "npu_id": chip.npu,
                    "chip_id": chip.chip,
                    "health": chip.health,
                    "bus_id": chip.bus_id,
                    "power_w": chip.power_w,
                    "temperature_c": chip.temperature_c,
                },
            )
        )
    return out


def run_smi(timeout: float = 10.0) -> str | None:
    tool = shutil.which("npu-smi")
    if tool is None:
        return None
    try:
        return subprocess.run([tool, "info"], capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def chip_now(index: int) -> Chip | None:
    """Row ``index`` of ``npu-smi info`` as it reads now, or None."""
    text = run_smi()
    chips = parse_info(text) if text else []
    return chips[index] if index < len(chips) else None


def probe(root: str | Path = "/") -> list[DeviceInfo]:
    text = run_smi()
    if text:
        version = re.search(r"Version:\s*(\S+)", text)
        return describe(parse_info(text), f"npu-smi {version.group(1)}" if version else "")
    # no tool: the device files still say how many chips the driver exposes
    files = sorted(Path(root, "dev").glob("davinci[0-9]*"), key=lambda p: int(p.name[7:]))
    return [
        DeviceInfo(
            kind="npu",
            index=i,
            vendor="Huawei",
            name="Ascend NPU",
            extra={"device_file": str(p), "source": "device file only (npu-smi not found)"},
        )
        for i, p in enumerate(files)
    ]
