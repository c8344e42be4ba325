from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "torch"
    capabilities = {"train", "infer", "data_parallel", "sharded", "tensor_parallel", "generate"}
