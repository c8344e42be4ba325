"""The reference passes its own kit: files, errors, portability and discovery are real checks
even where the numerics compare the reference with itself."""

from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "numpy"
    capabilities = {"train", "infer", "data_parallel", "generate"}
    exclusions = {
        "precision:bf16": "NumPy has no bfloat16",
        "precision:fp16": "NumPy runs float16 products in software, far slower than float32",
        "training:remat": "the reference keeps every activation; there is no autograd to recompute with",
    }
