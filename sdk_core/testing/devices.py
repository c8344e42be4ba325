"""DeviceConformanceSuite: the tests every device plugin passes. See the package docstring."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from ..plugins.manager import PluginManager
from ..plugins.records import DeviceInfo, MemoryReading, PowerReading
from ..version import API_VERSION

FRAMEWORK_MODULES = ("torch", "tensorflow", "jax", "mindspore")
MIN_MEMORY, MAX_MEMORY = 2**20, 2**50  # 1 MiB .. 1 PiB: sizes are in bytes, not MiB or GiB
MIN_FLOPS, MAX_FLOPS = 1e9, 1e18  # 1 GFLOP/s .. 1 EFLOP/s: rates are FLOP/s, not TFLOP/s


class DeviceConformanceSuite:
    """Subclass as ``TestDeviceConformance``; set ``plugin`` (the module your entry point
    names) and ``kinds`` (the device kinds it reports), and override the ``machine`` fixture
    so that, while it is active, the plugin sees recorded hardware (a fake ``/sys`` tree, a
    recorded tool output on ``PATH``, a recorded management library). Outside the fixture the
    plugin sees this machine, which the suite expects to have none of the hardware.

    It checks: the plugin registers cleanly for this core's API; probing the recorded machine
    gives well-typed devices with bytes and FLOP/s in plausible ranges, unique ids numbered
    from 0 per kind, within the hook deadline; probing imports no deep-learning framework and
    finds nothing (without error) on a machine without the hardware; memory and power readings
    agree with the probed devices; and readings for another plugin's device are left alone.
    """

    plugin: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()
    deadline: ClassVar[float] = 5.0

    @pytest.fixture
    def machine(self) -> Iterator[None]:
        """Make the plugin see recorded hardware (override this)."""
        raise NotImplementedError("override the 'machine' fixture to present recorded hardware")
        yield  # pragma: no cover

    # -- helpers ------------------------------------------------------------------------------
    def _module(self) -> Any:
        assert self.plugin, "set 'plugin' to the module your entry point names"
        return importlib.import_module(self.plugin)

    def _manager(self) -> PluginManager:
        manager = PluginManager(autoload=False, env={}, hook_timeout=self.deadline)
        status = manager.register(self._module(), "under-test", dist=self.plugin)
        assert status.ok, f"{self.plugin} did not register: {status.status}: {status.reason}"
        return manager

    def _devices(self, manager: PluginManager) -> list[DeviceInfo]:
        devices = [d for d in manager.devices() if d.plugin == "under-test"]
        problems = [p for p in manager.plugins() if p.name == "under-test" and not p.ok]
        assert not problems, f"probing failed: {problems[0].reason}"
        return devices

    # -- the contract ---------------------------------------------------------------------------
    def test_registers_for_this_core(self) -> None:
        assert getattr(self._module(), "SDK_CORE_API", None) == API_VERSION
        manager = self._manager()
        assert not manager.warnings, manager.warnings

    def test_recorded_devices_are_well_formed(self, machine: None) -> None:
        devices = self._devices(self._manager())
        assert devices, "the recorded machine should show at least one device"
        assert {d.kind for d in devices} <= set(self.kinds), f"kinds {sorted({d.kind for d in devices})}"
        for kind in {d.kind for d in devices}:
            indices = sorted(d.index for d in devices if d.kind == kind)
            assert indices == list(range(len(indices))), f"{kind} indices must count from 0: {indices}"
        for d in devices:
            assert d.name and d.vendor, f"{d.id}: name and vendor"
            if d.memory_total is not None:
                assert MIN_MEMORY <= d.memory_total <= MAX_MEMORY, f"{d.id}: memory_total is bytes"
            if d.memory_free is not None:
                assert d.memory_total is not None and d.memory_free <= d.memory_total, f"{d.id}: free <= total"
            for dtype, rate in d.peak_flops.items():
                assert MIN_FLOPS <= rate <= MAX_FLOPS, f"{d.id}: peak_flops[{dtype!r}] is FLOP/s"
            if d.compute_units is not None:
                assert d.compute_units >= 1
            json.dumps(d.to_dict(), default=str)  # `sdk devices --json` can print it

    def test_probe_answers_within_the_deadline(self, machine: None) -> None:
        t0 = time.monotonic()
        self._devices(self._manager())
        assert time.monotonic() - t0 < self.deadline

    def test_probing_imports_no_framework_and_finds_nothing_here(self) -> None:
        code = (
            "import json, sys, sdk_core\n"
            f"import {self.plugin} as plugin\n"
            "m = sdk_core.PluginManager(autoload=False, env={})\n"
            "status = m.register(plugin, 'under-test')\n"
            "devices = [d.id for d in m.devices() if d.plugin == 'under-test']\n"
            f"loaded = sorted(set(sys.modules) & set({FRAMEWORK_MODULES!r}))\n"
            "print(json.dumps([status.status, status.reason, devices, loaded]))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        status, reason, devices, loaded = json.loads(out.stdout.strip().splitlines()[-1])
        assert (status, reason) == ("ok", ""), reason
        assert loaded == [], f"probing imported {loaded}"
        assert devices == [], f"this machine has none of the hardware, yet the plugin found {devices}"

    def test_memory_readings_agree_with_the_devices(self, machine: None) -> None:
        manager = self._manager()
        for d in self._devices(manager):
            reading = manager.read_memory(d)
            if reading is None:
                continue
            assert isinstance(reading, MemoryReading)
            if reading.total is not None:
                assert reading.used <= reading.total, f"{d.id}: used <= total"
                if d.memory_total is not None:
                    assert reading.total == d.memory_total, f"{d.id}: the reading's total is the device's"
            if reading.peak is not None:
                assert reading.peak >= reading.used or reading.peak > 0

    def test_power_readings_are_consistent(self, machine: None) -> None:
        manager = self._manager()
        for d in self._devices(manager):
            first, second = manager.read_power(d), manager.read_power(d)
            if first is None:
                continue
            assert isinstance(first, PowerReading) and isinstance(second, PowerReading)
            if first.power_w is not None and first.limit_w:
                assert first.power_w <= 1.5 * first.limit_w, f"{d.id}: power {first.power_w} W, limit {first.limit_w} W"
            if first.energy_j is not None and second.energy_j is not None:
                assert second.energy_j >= first.energy_j, f"{d.id}: energy is cumulative"

    def test_other_devices_are_left_alone(self, machine: None) -> None:
        module = self._module()
        stranger = DeviceInfo(kind="not-a-kind-of-yours", index=0, name="x", vendor="y")
        for hook in ("sdk_read_memory", "sdk_read_power", "sdk_reset_peak_memory"):
            fn = getattr(module, hook, None)
            if fn is not None:
                assert fn(device=stranger) is None, f"{hook} must return None for a device that is not yours"
