"""Built-in plugin: the host CPU, probed from /proc and /sys (no framework import).

Peak float32 throughput is estimated as ``cores x max clock x FLOPs per cycle`` where the
vector width comes from the SIMD flags (two FMA units assumed); it is marked as an estimate.
Power comes from Linux RAPL (``/sys/class/powercap/intel-rapl:*``) when readable.
"""

from __future__ import annotations

import os
import platform
import re

from .markers import hookimpl
from .records import DeviceInfo, MemoryReading, PowerReading

SDK_CORE_API = 1
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "neon", "asimd", "sve")
RAPL = "/sys/class/powercap"  # plain paths: pathlib would cost `sdk devices` a few ms


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def _meminfo() -> dict[str, int]:
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def _physical_cores() -> int | None:
    pairs = set()
    phys = core = None
    for line in _read("/proc/cpuinfo").splitlines() + [""]:
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            phys = value.strip()
        elif key.strip() == "core id":
            core = value.strip()
        elif not line.strip() and core is not None:
            pairs.add((phys, core))
            phys = core = None
    return len(pairs) or None


def _peak_flops(flags: set[str], cores: int | None) -> dict[str, float]:
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if not cores or not khz.isdigit():
        return {}
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    fma = 2 if "fma" in flags or "avx512f" in flags else 1
    per_cycle = lanes * fma * 2  # two vector units
    return {"float32": cores * int(khz) * 1e3 * per_cycle}


@hookimpl
def sdk_probe_devices() -> list[DeviceInfo]:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    mem = _meminfo()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = _physical_cores() or threads
    peak = _peak_flops(flags, cores)
    return [
        DeviceInfo(
            kind="cpu",
            index=0,
            vendor=info.get("vendor_id", platform.machine()),
            name=info.get("model name") or info.get("Model name") or platform.processor() or platform.machine(),
            memory_total=mem.get("MemTotal"),
            memory_free=mem.get("MemAvailable"),
            compute_units=threads,
            peak_flops=peak,
            driver=platform.release(),
            extra={
                "physical_cores": cores,
                "simd": sorted(flags & set(SIMD_FLAGS)),
                "peak_flops_source": "estimate from cores x max clock x SIMD width" if peak else "",
            },
        )
    ]


@hookimpl
def sdk_read_memory(device: DeviceInfo) -> MemoryReading | None:
    if device.kind != "cpu":
        return None
    status = dict(line.split(":", 1) for line in _read("/proc/self/status").splitlines() if ":" in line)
    used, peak = (int(status.get(k, "0 kB").split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))
    return MemoryReading(used=used, peak=peak, total=device.memory_total, source="host RSS")


def _trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        pass


@hookimpl
def sdk_reset_peak_memory(device: DeviceInfo) -> bool | None:
    """Linux resets the process's peak RSS (VmHWM) when "5" is written to clear_refs. Memory
    the C allocator holds but no longer uses is handed back first (glibc's ``malloc_trim``), so
    the new window starts from what is in use, not from an earlier, larger peak's leftovers."""
    if device.kind != "cpu":
        return None
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return True


@hookimpl
def sdk_read_power(device: DeviceInfo) -> PowerReading | None:
    if device.kind != "cpu":
        return None
    try:
        zones = sorted(n for n in os.listdir(RAPL) if re.fullmatch(r"intel-rapl:[0-9]", n))
    except OSError:
        zones = []
    readings = [_read(os.path.join(RAPL, z, "energy_uj")).strip() for z in zones]
    if not readings or not all(r.isdigit() for r in readings):
        return None
    return PowerReading(energy_j=sum(int(r) for r in readings) / 1e6, source="RAPL package energy")
