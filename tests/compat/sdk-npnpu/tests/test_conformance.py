from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "npnpu"
