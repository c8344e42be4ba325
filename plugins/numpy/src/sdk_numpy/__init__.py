"""sdk-numpy: the NumPy framework plugin, the embedded default and the reference every other
framework plugin is checked against. Pure NumPy on the CPU."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks(
    "numpy", runtime="sdk_numpy._runtime", api=1, version_of="numpy", device_kinds=("cpu",), priority=0
)
