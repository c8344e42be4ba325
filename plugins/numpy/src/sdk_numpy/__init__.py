"""sdk-numpy: the NumPy framework plugin, the embedded default and the reference every other
framework plugin is checked against. Pure NumPy on the CPU."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks(
    "numpy",
    runtime="sdk_numpy._runtime",
    api=1,
    version_of="numpy",
    device_kinds=("cpu",),
    priority=0,
    # NumPy has no bfloat16, runs float16 products in software, and has no autograd to recompute with
    unsupported=("precision:bf16", "precision:fp16", "training:remat"),
    capabilities=("train", "infer", "data_parallel", "generate"),  # gradients summed by torch.distributed's gloo
    refusals={
        "sharded": "the NumPy reference keeps whole weights on every rank; shard with torch or jax",
        "tensor_parallel": "the NumPy reference keeps whole layers on every rank; split layers with torch or jax",
    },
)
