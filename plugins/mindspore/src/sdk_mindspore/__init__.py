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
    unsupported=("dtype:float64",),  # the plugin builds float32 networks only
)
