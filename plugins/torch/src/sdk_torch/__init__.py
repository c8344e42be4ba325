"""sdk-torch: the PyTorch framework plugin. torch is imported on first real use (in
``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks(
    "torch",
    runtime="sdk_torch._runtime",
    api=1,
    version_of="torch",
    device_kinds=("cpu", "cuda", "npu"),
    priority=20,
    # torch.distributed: gloo on the cpu, NCCL on CUDA; sharded (FSDP2, ZeroRedundancyOptimizer) and
    # tensor_parallel (parallelize_module on a 2-D DeviceMesh): see _sharded
    capabilities=("train", "infer", "data_parallel", "sharded", "tensor_parallel", "generate"),
)
