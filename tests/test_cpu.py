"""The built-in CPU probe reads the real machine."""

import os
from pathlib import Path

import sdk_core
from sdk_core.plugins import cpu


def test_cpu_probe_reports_this_machine():
    [device] = cpu.sdk_probe_devices()
    assert device.kind == "cpu" and device.id == "cpu:0"
    assert device.compute_units == len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    assert device.memory_total == total_kib * 1024
    assert 0 < device.memory_free <= device.memory_total
    flags = Path("/proc/cpuinfo").read_text()
    for flag in device.extra["simd"]:
        assert f" {flag}" in flags
    assert device.name


def test_memory_reading_tracks_allocation():
    manager = sdk_core.PluginManager(autoload=False)
    device = manager.device("cpu")
    before = manager.read_memory(device)
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    after = manager.read_memory(device)
    assert after.used - before.used > 48 * 2**20
    assert after.peak >= after.used
    reading = manager.read_power(device)
    assert reading is None or reading.energy_j > 0  # RAPL where readable, never invented


def test_peak_memory_window_resets():
    manager = sdk_core.PluginManager(autoload=False)
    device = manager.device("cpu")
    block = bytearray(96 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    del block
    high = manager.read_memory(device).peak
    assert manager.reset_peak_memory(device) is True
    after = manager.read_memory(device)
    assert after.peak < high - 64 * 2**20 and after.peak >= after.used
