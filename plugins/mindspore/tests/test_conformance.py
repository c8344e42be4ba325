from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "mindspore"
    capabilities = {"train", "infer", "data_parallel", "generate"}
    exclusions = {
        "dtype:float64": "this plugin builds float32 networks only",
        "precision:bf16": "MindSpore's CPU build has no bfloat16 MatMul; mixed precision is not wired up",
        "precision:fp16": "mixed precision (MindSpore amp) is not wired up in this plugin",
        "training:remat": "Cell.recompute needs graph mode; this plugin runs PyNative with jit steps",
    }
