"""The device conformance kit on the Ascend plugin: the real probe runs the real tool path,
with an ``npu-smi`` on ``PATH`` that prints a recorded 910B table."""

import stat

import pytest

from sdk_core.testing import DeviceConformanceSuite

from .test_ascend import DATA


class TestDeviceConformance(DeviceConformanceSuite):
    plugin = "sdk_ascend"
    kinds = ("npu",)

    @pytest.fixture
    def machine(self, monkeypatch, tmp_path):
        tool = tmp_path / "npu-smi"
        tool.write_text(f"#!/bin/sh\nexec /bin/cat '{DATA / 'npu-smi-info-910b.txt'}'\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", str(tmp_path))
        yield
