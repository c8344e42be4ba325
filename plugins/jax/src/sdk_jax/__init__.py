"""sdk-jax: the JAX framework plugin (jax.jit steps, optax optimizers). jax is imported on
first real use (in ``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks(
    "jax",
    runtime="sdk_jax._runtime",
    api=1,
    version_of="jax",
    device_kinds=("cpu", "cuda", "tpu"),
    priority=15,
    unsupported=("dtype:float64",),  # needs JAX's process-wide jax_enable_x64 switch
    # jax.distributed and a data-sharded jit; ZeRO 1-3 and tensor parallelism on a sharded jit
    capabilities=("train", "infer", "data_parallel", "sharded", "tensor_parallel", "generate"),
)
