"""sdk-tensorflow: the TensorFlow framework plugin (Keras layers, tf.function steps).

TensorFlow is imported on first real use, never by discovery: the hooks below import the
private modules that import it.
"""
from __future__ import annotations

from importlib import metadata

from sdk_core import (BuildRequest, FrameworkInfo, PredictRequest, StepRequest, WeightsRequest,
                      hookimpl)

SDK_CORE_API = 1
NAME = "tensorflow"
# which distribution provides TensorFlow decides the devices it can drive
DISTRIBUTIONS = {"tensorflow": ("cpu", "cuda"), "tensorflow-cpu": ("cpu",), "tensorflow-tpu": ("cpu", "tpu"),
                 "tensorflow-macos": ("cpu",)}


def _installed() -> tuple[str | None, tuple[str, ...]]:
    """The installed TensorFlow version and device kinds, read from package metadata."""
    for dist, kinds in DISTRIBUTIONS.items():
        try:
            return metadata.version(dist), kinds
        except metadata.PackageNotFoundError:
            continue
    return None, ("cpu",)


@hookimpl
def sdk_framework_info() -> FrameworkInfo:
    version, kinds = _installed()
    return FrameworkInfo(name=NAME, version=version, device_kinds=kinds, priority=10)


@hookimpl
def sdk_build_model(request: BuildRequest):
    if request.framework != NAME:
        return None
    from ._runtime import TfModel

    return TfModel(request)


@hookimpl
def sdk_make_train_step(request: StepRequest):
    if request.framework != NAME:
        return None
    from ._runtime import train_step

    return train_step(request)


@hookimpl
def sdk_make_predict(request: PredictRequest):
    if request.framework != NAME:
        return None
    from ._runtime import predict

    return predict(request.model)


@hookimpl
def sdk_get_weights(request: WeightsRequest):
    return request.model.get_weights() if request.framework == NAME else None


@hookimpl
def sdk_set_weights(request: WeightsRequest):
    if request.framework != NAME:
        return None
    request.model.set_weights(request.weights)
    return True
