"""sdk-mindspore: the MindSpore framework plugin (nn.Cell, value_and_grad + jit). mindspore is imported on first real use, never by
discovery: the hooks below import the private modules that import it."""
from __future__ import annotations

from importlib import metadata

from sdk_core import (BuildRequest, FrameworkInfo, PredictRequest, StepRequest, WeightsRequest,
                      hookimpl)

SDK_CORE_API = 1
NAME = "mindspore"


def _version() -> str | None:
    try:
        return metadata.version("mindspore")
    except metadata.PackageNotFoundError:
        return None


@hookimpl
def sdk_framework_info() -> FrameworkInfo:
    return FrameworkInfo(name=NAME, version=_version(), device_kinds=("cpu", "cuda", "npu"), priority=5)


@hookimpl
def sdk_build_model(request: BuildRequest):
    if request.framework != NAME:
        return None
    from ._runtime import MsModel

    return MsModel(request)


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
