from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "jax"
    capabilities = {"train", "infer", "data_parallel", "sharded", "tensor_parallel", "generate"}
    exclusions = {
        "dtype:float64": "float64 needs JAX's process-wide jax_enable_x64 switch, which a plugin "
        "must not flip behind the user's back",
    }
