from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "tensorflow"
    capabilities = {"train", "infer", "data_parallel", "generate"}
