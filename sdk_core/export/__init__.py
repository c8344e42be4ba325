"""Export for edge and interchange: a ModelSpec and its canonical weights written as ONNX by
the core itself, with the ``onnx`` package (no training framework is imported), and int8
models for deployment with ``onnxruntime.quantization``.

::

    from sdk_core import export
    model = export.to_onnx(spec, stack.get_weights())        # an onnx.ModelProto, fully checked
    int8 = export.quantize_static(model, x_train[:256])      # QDQ, per-channel weights
    export.export_file("lenet5.safetensors", "lenet5.onnx")  # what `sdk export` runs

Needs ``pip install 'sdk-core[onnx]'`` (onnx and onnxruntime). ONNX Runtime serves the files
as a framework: ``pip install sdk-onnxruntime``, then ``Stack("onnxruntime")``.
"""

from .graph import DEFAULT_OPSET, MIN_OPSET, metadata_of, spec_of, to_onnx
from .int8 import CALIBRATION_METHODS, codebook_int8, quantize_static
from .writer import export_file, read_model

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "codebook_int8",
    "export_file",
    "metadata_of",
    "quantize_static",
    "read_model",
    "spec_of",
    "to_onnx",
]
