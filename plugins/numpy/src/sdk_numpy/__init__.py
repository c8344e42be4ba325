"""sdk-numpy: the NumPy framework plugin, the embedded default and the reference every other
framework plugin is checked against. Pure NumPy on the CPU."""
from __future__ import annotations

from importlib import metadata

from sdk_core import (BuildRequest, FrameworkInfo, PredictRequest, StepRequest, WeightsRequest,
                      hookimpl)

SDK_CORE_API = 1
NAME = "numpy"


@hookimpl
def sdk_framework_info() -> FrameworkInfo:
    return FrameworkInfo(name=NAME, version=metadata.version("numpy"), device_kinds=("cpu",),
                         priority=0)


@hookimpl
def sdk_build_model(request: BuildRequest):
    if request.framework != NAME:
        return None
    from ._model import NumpyModel

    return NumpyModel(request.spec, request.dtype, request.seed)


@hookimpl
def sdk_make_train_step(request: StepRequest):
    if request.framework != NAME:
        return None
    return request.model.train_step(request.loss, request.optimizer)


@hookimpl
def sdk_make_predict(request: PredictRequest):
    if request.framework != NAME:
        return None
    return request.model.forward


@hookimpl
def sdk_get_weights(request: WeightsRequest):
    if request.framework != NAME:
        return None
    return {k: v.copy() for k, v in request.model.params.items()}


@hookimpl
def sdk_set_weights(request: WeightsRequest):
    if request.framework != NAME:
        return None
    model = request.model
    model.params.update({k: v.astype(model.dtype, copy=True) for k, v in request.weights.items()})
    return True
