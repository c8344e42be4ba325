from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "mindspore"
    exclusions = {"dtype:float64": "this plugin builds float32 networks only"}
