"""The device conformance kit on the NVIDIA plugin, through an NVML that answers with values
recorded on an H100 SXM5 80GB (see test_nvidia.py): every NVML call the plugin makes is
served from the recording, so the plugin's own code runs end to end."""

import types

import pytest

import sdk_nvidia
from sdk_core.testing import DeviceConformanceSuite
from sdk_nvidia import _nvml

from .test_nvidia import H100


def recorded_nvml(gpus: int = 2) -> types.SimpleNamespace:
    """An NVML module answering from the H100 recording for ``gpus`` identical boards."""
    memory = types.SimpleNamespace(total=H100["memory_total"], free=H100["memory_free"])
    memory.used = memory.total - memory.free
    energy = {"mj": 1_000_000}

    def total_energy(handle):
        energy["mj"] += 5_000  # the counter only grows
        return energy["mj"]

    return types.SimpleNamespace(
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: gpus,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: H100["name"].encode(),
        nvmlDeviceGetUUID=lambda h: H100["uuid"][:-1] + str(h),
        nvmlDeviceGetMemoryInfo=lambda h: memory,
        nvmlDeviceGetCudaComputeCapability=lambda h: H100["compute_capability"],
        nvmlDeviceGetNumGpuCores=lambda h: H100["cuda_cores"],
        nvmlDeviceGetMaxClockInfo=lambda h, c: H100["max_sm_clock_mhz"] if c == 1 else H100["max_memory_clock_mhz"],
        nvmlDeviceGetClockInfo=lambda h, c: H100["sm_clock_mhz"],
        nvmlDeviceGetPowerUsage=lambda h: H100["power_mw"],
        nvmlDeviceGetEnforcedPowerLimit=lambda h: H100["power_limit_mw"],
        nvmlDeviceGetTotalEnergyConsumption=total_energy,
        nvmlSystemGetDriverVersion=lambda: b"550.54.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
    )


class TestDeviceConformance(DeviceConformanceSuite):
    plugin = "sdk_nvidia"
    kinds = ("cuda",)

    @pytest.fixture
    def machine(self, monkeypatch):
        nvml = recorded_nvml()
        monkeypatch.setattr(sdk_nvidia, "driver_present", lambda: True)
        monkeypatch.setattr(_nvml, "_nvml", lambda: nvml)
        yield
