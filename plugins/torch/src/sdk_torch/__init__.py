"""sdk-torch: the PyTorch framework plugin. torch is imported on first real use (in
``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks("torch", "sdk_torch._runtime", {"torch": ("cpu", "cuda", "npu")}, priority=20)
