"""sdk-mindspore: the MindSpore framework plugin (nn.Cell, value_and_grad + jit). mindspore
is imported on first real use (in ``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks(
    "mindspore",
    runtime="sdk_mindspore._runtime",
    api=1,
    version_of="mindspore",
    device_kinds=("cpu", "cuda", "npu"),
    priority=5,
    # float32 networks only; mixed precision and recomputation are not wired up here: the CPU
    # build has no bfloat16 MatMul, and Cell.recompute needs graph mode, not PyNative + jit
    unsupported=("dtype:float64", "precision:bf16", "precision:fp16", "training:remat"),
    # data_parallel: mindspore.communication, AllReduce in the step; generate: mindspore.jit decode steps
    capabilities=("train", "infer", "data_parallel", "generate"),
    refusals={
        "sharded": "MindSpore's optimizer parallel (ZeRO) runs on Ascend/GPU only, not on the CPU build; "
        "train with strategy='data_parallel', or shard with torch or jax",
        "tensor_parallel": "MindSpore's semi-auto parallel runs on Ascend/GPU only, not on the CPU build; "
        "split layers with torch or jax",
    },
)
