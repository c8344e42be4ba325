"""sdk-mindspore: the MindSpore framework plugin (nn.Cell, value_and_grad + jit). mindspore
is imported on first real use (in ``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks("mindspore", "sdk_mindspore._runtime", {"mindspore": ("cpu", "cuda", "npu")}, priority=5)
