"""sdk-onnxruntime: ONNX Runtime as an inference-only framework. The core writes each model as
ONNX itself (``sdk_core.export``); this plugin runs it on the execution provider the device
needs, in float32 or int8."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

from ._providers import BACKENDS

plugin = FrameworkHooks(
    "onnxruntime",
    runtime="sdk_onnxruntime._runtime",
    api=1,
    # onnxruntime-gpu brings the CUDA and TensorRT execution providers; onnxruntime the CPU one
    version_of={"onnxruntime-gpu": ("cpu", "cuda"), "onnxruntime": ("cpu",)},
    capabilities=("infer", "int8", "generate"),
    backends=BACKENDS,
    unsupported=("dtype:float64",),
)
