"""The framework hooks every framework plugin needs, written once.

A framework plugin's entry point names a :class:`FrameworkHooks` object. It answers
``sdk_framework_info`` from package metadata (no framework import) and hands the other hooks,
for its own framework only, to the plugin's private runtime module, imported on first real
use. That module provides::

    build(request: BuildRequest) -> model     # model.get_weights() -> {name: array}
                                              # model.set_weights({name: array})
    train_step(request: StepRequest) -> step(x, y) -> loss
    predict(model) -> predict(x) -> numpy array
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import discovery
from .markers import hookimpl
from .records import BuildRequest, FrameworkInfo, PredictRequest, StepRequest, WeightsRequest

if TYPE_CHECKING:
    import numpy as np


class FrameworkHooks:
    """Hooks for the framework ``name``.

    :param runtime: the private module doing the work, e.g. ``"sdk_torch._runtime"``.
    :param distributions: the distributions that provide the framework, each with the device
        kinds it can drive (``{"tensorflow-cpu": ("cpu",), "tensorflow": ("cpu", "cuda")}``);
        the first one installed gives the version and the device kinds.
    :param priority: preference in ``Stack.auto()`` between frameworks on the same device.
    """

    SDK_CORE_API = 1

    def __init__(
        self, name: str, runtime: str, distributions: Mapping[str, tuple[str, ...]], priority: int = 0
    ) -> None:
        self.name, self.runtime, self.distributions, self.priority = name, runtime, dict(distributions), priority

    def _runtime(self) -> ModuleType:
        return importlib.import_module(self.runtime)

    @hookimpl
    def sdk_framework_info(self) -> FrameworkInfo:
        for dist, kinds in self.distributions.items():
            version = discovery.version(dist)
            if version is None:
                continue
            return FrameworkInfo(name=self.name, version=version, device_kinds=kinds, priority=self.priority)
        return FrameworkInfo(name=self.name, version=None, device_kinds=("cpu",), priority=self.priority)

    @hookimpl
    def sdk_build_model(self, request: BuildRequest) -> Any:
        return self._runtime().build(request) if request.framework == self.name else None

    @hookimpl
    def sdk_make_train_step(self, request: StepRequest) -> Callable[[np.ndarray, np.ndarray], Any] | None:
        return self._runtime().train_step(request) if request.framework == self.name else None

    @hookimpl
    def sdk_make_predict(self, request: PredictRequest) -> Callable[[np.ndarray], np.ndarray] | None:
        return self._runtime().predict(request.model) if request.framework == self.name else None

    @hookimpl
    def sdk_get_weights(self, request: WeightsRequest) -> dict[str, np.ndarray] | None:
        return request.model.get_weights() if request.framework == self.name else None

    @hookimpl
    def sdk_set_weights(self, request: WeightsRequest) -> bool | None:
        if request.framework != self.name:
            return None
        request.model.set_weights(request.weights)
        return True
