"""Reading NVIDIA GPUs through NVML (nvidia-ml-py). No deep-learning framework is imported.

``snapshot(handle)`` collects what NVML says about one GPU into a plain dict, and
``describe(index, snap, system)`` turns it into a DeviceInfo; tests feed ``describe`` values
recorded from real GPUs.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from sdk_core import DeviceInfo, MemoryReading, PowerReading

from . import _arch


def _nvml():
    """The initialised pynvml module, or None when the library or the driver is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no nvidia-ml-py, no libnvidia-ml.so, no driver: no NVIDIA devices
        return None
    return pynvml


def _try(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception:  # NVML answers NOT_SUPPORTED for many fields on many boards
        return default


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def snapshot(nv, handle) -> dict[str, Any]:
    mem = _try(nv.nvmlDeviceGetMemoryInfo, handle)
    return {
        "name": _text(nv.nvmlDeviceGetName(handle)),
        "uuid": _text(_try(nv.nvmlDeviceGetUUID, handle, default="")),
        "memory_total": getattr(mem, "total", None),
        "memory_free": getattr(mem, "free", None),
        "compute_capability": tuple(_try(nv.nvmlDeviceGetCudaComputeCapability, handle, default=()) or ()),
        "cuda_cores": _try(nv.nvmlDeviceGetNumGpuCores, handle),
        "max_sm_clock_mhz": _try(nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_SM),
        "sm_clock_mhz": _try(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
        "max_memory_clock_mhz": _try(nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_MEM),
        "power_mw": _try(nv.nvmlDeviceGetPowerUsage, handle),
        "power_limit_mw": _try(nv.nvmlDeviceGetEnforcedPowerLimit, handle),
    }


def system(nv) -> dict[str, str]:
    cuda = _try(nv.nvmlSystemGetCudaDriverVersion)
    return {
        "driver": _text(_try(nv.nvmlSystemGetDriverVersion, default="")),
        "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else "",
    }


def describe(index: int, snap: dict[str, Any], sys_info: dict[str, str]) -> DeviceInfo:
    cc = tuple(snap["compute_capability"]) or None
    lanes = _arch.fp32_lanes(cc) if cc else None
    sms = snap["cuda_cores"] // lanes if snap.get("cuda_cores") and lanes else None
    watts = lambda mw: mw / 1000 if mw is not None else None
    return DeviceInfo(
        kind="cuda",
        index=index,
        vendor="NVIDIA",
        name=snap["name"],
        memory_total=snap["memory_total"],
        memory_free=snap["memory_free"],
        compute_units=sms,
        peak_flops=_arch.peak_flops(cc, sms, snap.get("max_sm_clock_mhz")) if cc else {},
        driver=f"driver {sys_info['driver']}, CUDA {sys_info['cuda']}".strip(", "),
        extra={
            "uuid": snap["uuid"],
            "compute_capability": ".".join(map(str, cc)) if cc else "",
            "architecture": _arch.NAMES.get(cc[0], "") if cc else "",
            "cuda_cores": snap.get("cuda_cores"),
            "sm_clock_mhz": snap.get("sm_clock_mhz"),
            "max_sm_clock_mhz": snap.get("max_sm_clock_mhz"),
            "max_memory_clock_mhz": snap.get("max_memory_clock_mhz"),
            "power_w": watts(snap.get("power_mw")),
            "power_limit_w": watts(snap.get("power_limit_mw")),
            "peak_flops_source": "SMs x per-SM rate (architecture table) x max SM clock",
        },
    )


def probe() -> list[DeviceInfo]:
    nv = _nvml()
    if nv is None:
        return []
    sys_info = system(nv)
    return [
        describe(i, snapshot(nv, nv.nvmlDeviceGetHandleByIndex(i)), sys_info) for i in range(nv.nvmlDeviceGetCount())
    ]


def memory(index: int) -> MemoryReading | None:
    nv = _nvml()
    if nv is None:
        return None
    mem = nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(index))
    return MemoryReading(used=mem.used, total=mem.total, source="NVML device memory")


def power(index: int) -> PowerReading | None:
    nv = _nvml()
    if nv is None:
        return None
    h = nv.nvmlDeviceGetHandleByIndex(index)
    energy = _try(nv.nvmlDeviceGetTotalEnergyConsumption, h)  # mJ since the driver loaded (Volta+)
    mw, limit = _try(nv.nvmlDeviceGetPowerUsage, h), _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
    if energy is None and mw is None:
        return None
    return PowerReading(
        energy_j=energy / 1000 if energy is not None else None,
        power_w=mw / 1000 if mw is not None else None,
        limit_w=limit / 1000 if limit is not None else None,
        source="NVML",
    )


class PowerSampler:
    """Energy (J) and average power (W) of one GPU over a stretch of work::

        with PowerSampler(0) as sampler:
            run_benchmark()
        print(sampler.joules, sampler.watts)

    Uses NVML's energy counter where the GPU has one; otherwise integrates power samples
    taken every ``interval`` seconds on a background thread.
    """

    def __init__(self, index: int = 0, interval: float = 0.05) -> None:
        self.index, self.interval = index, interval
        self.joules: float | None = None
        self.watts: float | None = None
        self.seconds: float | None = None
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()

    def _sample(self, nv, handle) -> None:
        while not self._stop.is_set():
            mw = _try(nv.nvmlDeviceGetPowerUsage, handle)
            if mw is not None:
                self._samples.append((time.perf_counter(), mw / 1000))
            self._stop.wait(self.interval)

    def __enter__(self) -> PowerSampler:
        self._nv = _nvml()
        if self._nv is None:
            raise RuntimeError("no NVIDIA driver: nothing to sample")
        self._handle = self._nv.nvmlDeviceGetHandleByIndex(self.index)
        self._energy0 = _try(self._nv.nvmlDeviceGetTotalEnergyConsumption, self._handle)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, args=(self._nv, self._handle), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self._t0
        energy1 = _try(self._nv.nvmlDeviceGetTotalEnergyConsumption, self._handle)
        if self._energy0 is not None and energy1 is not None:
            self.joules = (energy1 - self._energy0) / 1000
        else:
            self.joules = integrate(self._samples)
        self.watts = self.joules / self.seconds if self.joules is not None and self.seconds else None


def integrate(samples: list[tuple[float, float]]) -> float | None:
    """Trapezoidal energy (J) from (seconds, watts) samples."""
    if len(samples) < 2:
        return None
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(samples))
