"""The conformance kit: the tests every framework plugin, ours or a third party's, passes.

Use it from the plugin's tests (pytest, with the reference ``sdk-numpy`` installed)::

    # tests/test_conformance.py
    from sdk_core.testing import ConformanceSuite

    class TestConformance(ConformanceSuite):
        framework = "myframework"
        device = "cpu"
        exclusions = {"optimizer:rmsprop": "why it is not supported"}

It checks that discovery imports no framework; every layer builds and its forward pass and one
training step equal the NumPy reference within float32 tolerance for the same weights; three
steps of every optimizer, schedule and loss give the same weights as the reference; weights
round-trip through safetensors; a model trained here loads in every other installed framework
(and back) with the same predictions; bad input gives clear errors; and that every excluded
feature is refused with an sdk_core error. Exclusions appear as skips with their reason.

Device plugins run :class:`DeviceConformanceSuite` the same way, presenting recorded hardware
through a ``machine`` fixture::

    from sdk_core.testing import DeviceConformanceSuite

    class TestDeviceConformance(DeviceConformanceSuite):
        plugin = "sdk_myaccel"
        kinds = ("myaccel",)

        @pytest.fixture
        def machine(self, monkeypatch, tmp_path):
            ...  # make sdk_myaccel see a recorded device tree, tool output or library
            yield
"""

from .cases import ALL_FEATURES, LAYER_CASES, STEP_CASES
from .devices import DeviceConformanceSuite
from .suite import ConformanceSuite

__all__ = ["ALL_FEATURES", "LAYER_CASES", "STEP_CASES", "ConformanceSuite", "DeviceConformanceSuite"]
