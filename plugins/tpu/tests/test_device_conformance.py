"""The device conformance kit on the TPU plugin, on a file tree laid out like a v4-8 TPU VM."""

import functools

import pytest

from sdk_core.testing import DeviceConformanceSuite
from sdk_tpu import _detect

from .test_tpu import tree


class TestDeviceConformance(DeviceConformanceSuite):
    plugin = "sdk_tpu"
    kinds = ("tpu",)

    @pytest.fixture
    def machine(self, monkeypatch, tmp_path):
        root = tree(tmp_path, pci=["0x005e"] * 4, dev=[f"accel{i}" for i in range(4)])
        env = {"TPU_ACCELERATOR_TYPE": "v4-8", "TPU_WORKER_ID": "0"}
        monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v4-8")  # what makes the plugin look at all
        monkeypatch.setattr(_detect, "probe", functools.partial(_detect.probe, root, env))
        yield
