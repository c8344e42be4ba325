"""The NVIDIA plugin: derivations from NVML values recorded on real GPUs, and the real probe on
this machine (which has no NVIDIA driver)."""

import subprocess
import sys

import pytest

from sdk_nvidia import _arch
from sdk_nvidia._nvml import describe, integrate, probe

# What NVML reports on an H100 SXM5 80GB (driver 550.54.15, CUDA 12.4): public nvidia-smi -q values.
H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-00000000-1111-2222-3333-444444444444",
    "memory_total": 85520809984,
    "memory_free": 84942454784,
    "compute_capability": (9, 0),
    "cuda_cores": 16896,
    "max_sm_clock_mhz": 1980,
    "sm_clock_mhz": 345,
    "max_memory_clock_mhz": 2619,
    "power_mw": 71234,
    "power_limit_mw": 700000,
}
A100 = {
    **H100,
    "name": "NVIDIA A100-SXM4-40GB",
    "memory_total": 42949672960,
    "compute_capability": (8, 0),
    "cuda_cores": 6912,
    "max_sm_clock_mhz": 1410,
    "power_limit_mw": 400000,
}


def test_h100_description_and_peaks():
    d = describe(0, H100, {"driver": "550.54.15", "cuda": "12.4"})
    assert (d.kind, d.id, d.vendor, d.compute_units) == ("cuda", "cuda:0", "NVIDIA", 132)
    assert d.driver == "driver 550.54.15, CUDA 12.4"
    assert d.extra["compute_capability"] == "9.0" and d.extra["architecture"] == "Hopper"
    assert d.extra["power_w"] == pytest.approx(71.234) and d.extra["power_limit_w"] == 700
    assert d.peak_flops["float32"] == pytest.approx(132 * 128 * 2 * 1.98e9)  # 66.9 TFLOPS
    assert d.peak_flops["bfloat16"] == pytest.approx(1070e12, rel=1e-3)  # 989 TFLOPS at 1.83 GHz boost


def test_a100_matches_published_figures():
    d = describe(3, A100, {"driver": "535.104.05", "cuda": "12.2"})
    assert d.compute_units == 108 and d.id == "cuda:3"
    assert d.peak_flops["float32"] == pytest.approx(19.5e12, rel=0.01)  # NVIDIA: 19.5 TFLOPS
    assert d.peak_flops["float16"] == pytest.approx(312e12, rel=0.01)  # NVIDIA: 312 TFLOPS dense
    assert d.peak_flops["float64"] == pytest.approx(9.7e12, rel=0.01)  # NVIDIA: 9.7 TFLOPS


def test_consumer_blackwell_tensor_rate():
    # RTX 5090: 170 SMs at 2.407 GHz, 419 TFLOPS dense FP16 (half of the 838 sparse figure)
    assert _arch.peak_flops((12, 0), 170, 2407)["float16"] == pytest.approx(419e12, rel=0.01)


def test_unknown_architecture_reports_no_peak_rather_than_a_guess():
    d = describe(0, {**H100, "compute_capability": (99, 0)}, {"driver": "", "cuda": ""})
    assert d.peak_flops == {} and d.compute_units is None
    assert _arch.peak_flops((9, 0), None, 1980) == {}


def test_energy_integration():
    assert integrate([(0.0, 100.0), (1.0, 200.0), (3.0, 200.0)]) == pytest.approx(150 + 400)
    assert integrate([(0.0, 100.0)]) is None


def test_this_machine_has_no_nvidia_gpu_and_probing_imports_no_framework():
    assert probe() == []
    code = (
        "import sys, sdk_nvidia; print(sdk_nvidia.sdk_probe_devices(), "
        "sorted(set(sys.modules) & {'torch', 'tensorflow', 'jax', 'mindspore'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"
