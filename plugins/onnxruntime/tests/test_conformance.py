from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "onnxruntime"
    capabilities = {"infer", "int8", "generate"}
    exclusions = {"dtype:float64": "the exported ONNX models are float32"}
