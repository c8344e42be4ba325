"""The framework hooks every framework plugin needs, written once.

A framework plugin's entry point names a :class:`FrameworkHooks` object. It answers
``sdk_framework_info`` from the installed distributions (no framework import) and hands the other hooks,
for its own framework only, to the plugin's private runtime module, imported on first real
use. That module provides::

    build(request: BuildRequest) -> model     # model.get_weights() -> {name: array}
                                              # model.set_weights({name: array})
    train_step(request: StepRequest) -> step(x, y) -> loss
    predict(model) -> predict(x) -> numpy array

and, for the ``int8`` capability, frameworks that run a model from a file, the
``data_parallel`` capability (``sharded`` and ``tensor_parallel`` build on it: the step gets
``StepRequest.zero`` and ``.tensor``) and the ``generate`` capability::

    quantize(request: QuantizeRequest) -> int8 model
    serialize(model) -> bytes | None             # the file the framework runs the model from
    init_distributed(request: DistributedRequest) -> None
    all_reduce(values: numpy array) -> numpy array of the sums over every rank
    decoder(request: DecodeRequest) -> decoder   # .prefill(ids, lengths), .step(ids): logits

An inference-only plugin declares ``capabilities=("infer",)``: its ``train_step`` is never
called (the core refuses training first).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import discovery
from .markers import hookimpl
from .records import FrameworkInfo

if TYPE_CHECKING:
    import numpy as np

    from ..model.optim import OptimizerState
    from .requests import (
        AllReduceRequest,
        BuildRequest,
        DecodeRequest,
        DistributedRequest,
        OptimizerStateRequest,
        PredictRequest,
        QuantizeRequest,
        StepRequest,
        WeightsRequest,
    )


class FrameworkHooks:
    """Hooks for the framework ``name``, all arguments after ``name`` by keyword::

        plugin = FrameworkHooks(
            "myframework",
            runtime="sdk_myframework._runtime",
            api=1,
            version_of="myframework",
            device_kinds=("cpu", "cuda"),
            unsupported=("dtype:float64",),
        )

    :param name: the framework name users pass to ``Stack(name)``.
    :param runtime: the private module doing the work, imported on first real use.
    :param api: the hook API version (``sdk_core.API_VERSION``) the plugin was written
        against; the core refuses a plugin written for another one.
    :param version_of: the distribution whose installed version is the framework's version
        (``"torch"``), or a mapping of distributions to the device kinds each can drive
        (``{"tensorflow-cpu": ("cpu",), "tensorflow": ("cpu", "cuda")}``): the first one
        installed gives the version and the device kinds. None installed: "not installed",
        naming the distributions looked up.
    :param device_kinds: the device kinds it drives, when ``version_of`` is one name.
    :param priority: preference in ``Stack.auto()`` between frameworks on the same device.
    :param unsupported: feature ids it does not implement (``layer:attention``,
        ``optimizer:rmsprop``, ``loss:mse``, ``schedule:cosine``, ``dtype:float64``); the core
        refuses them before calling the plugin.
    :param capabilities: of :data:`~sdk_core.plugins.records.CAPABILITIES` (default: train
        and infer); ``int8`` needs the runtime module's ``quantize``, ``generate`` its ``decoder``.
    :param refusals: for capabilities the plugin lacks, the reason (``{"sharded": "MindSpore's
        optimizer parallel runs on Ascend/GPU only"}``); the core's refusal quotes it.
    :param backends: per device kind, the backend names it runs there, best first (ONNX
        Runtime's execution providers), shown by ``sdk devices``.

    The 0.1 form ``FrameworkHooks(name, runtime, {distribution: device_kinds}, priority=0)``
    still works until 0.3, with a ``DeprecationWarning`` that shows the call above to write
    instead. Such a plugin is API 1 and, unless it passes ``unsupported=``, declares
    unsupported what the contract gained after 0.1 (:data:`SINCE_0_1`): a runtime written for
    0.1 cannot honour those requests, so the core refuses them rather than let them be ignored.
    """

    def __init__(
        self,
        name: str,
        *legacy: Any,
        runtime: str | None = None,
        api: int | None = None,
        version_of: str | Mapping[str, Iterable[str]] | None = None,
        device_kinds: Iterable[str] = ("cpu",),
        priority: int = 0,
        unsupported: Iterable[str] | None = None,
        capabilities: Iterable[str] = ("train", "infer"),
        backends: Mapping[str, Iterable[str]] | None = None,
        refusals: Mapping[str, str] | None = None,
    ) -> None:
        if legacy:  # 0.1: FrameworkHooks(name, runtime, {distribution: device_kinds}, priority=0)
            runtime, api, version_of, priority, unsupported = _legacy_form(
                name, legacy, runtime, version_of, priority, unsupported
            )
        missing = [
            arg for arg, value in (("runtime", runtime), ("api", api), ("version_of", version_of)) if value is None
        ]
        if missing:
            raise TypeError(f"FrameworkHooks('{name}', ...) needs the keyword arguments {', '.join(missing)}")
        assert runtime is not None and api is not None and version_of is not None  # for type checkers
        unsupported = () if unsupported is None else unsupported
        self.name, self.runtime, self.priority = name, runtime, priority
        self.SDK_CORE_API = api
        if isinstance(version_of, str):
            version_of = {version_of: tuple(device_kinds)}
        self.version_of = {dist: tuple(kinds) for dist, kinds in version_of.items()}
        self.unsupported, self.capabilities = tuple(unsupported), tuple(capabilities)
        self.backends = {kind: tuple(names) for kind, names in (backends or {}).items()}
        self.refusals = dict(refusals or {})
        # a malformed declaration fails here, at import, not when a user asks
        FrameworkInfo(
            name=name,
            unsupported=self.unsupported,
            capabilities=self.capabilities,
            backends=self.backends,
            refusals=self.refusals,
        )

    def _runtime(self) -> ModuleType:
        return importlib.import_module(self.runtime)

    @hookimpl
    def sdk_framework_info(self) -> FrameworkInfo:
        version, kinds = None, next(iter(self.version_of.values()), ("cpu",))
        for dist, dist_kinds in self.version_of.items():
            version = discovery.version(dist)
            if version is not None:
                kinds = dist_kinds
                break
        return FrameworkInfo(
            name=self.name,
            version=version,
            device_kinds=kinds,
            priority=self.priority,
            unsupported=self.unsupported,
            distributions=tuple(self.version_of),
            capabilities=self.capabilities,
            backends={k: v for k, v in self.backends.items() if k in kinds},
            refusals=self.refusals,
        )

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
    def sdk_make_decoder(self, request: DecodeRequest) -> Any:
        return self._runtime().decoder(request) if request.framework == self.name else None

    @hookimpl
    def sdk_init_distributed(self, request: DistributedRequest) -> bool | None:
        if request.framework != self.name:
            return None
        self._runtime().init_distributed(request)
        return True

    @hookimpl
    def sdk_all_reduce(self, request: AllReduceRequest) -> Any:
        return self._runtime().all_reduce(request.values) if request.framework == self.name else None

    @hookimpl
    def sdk_quantize_model(self, request: QuantizeRequest) -> Any:
        return self._runtime().quantize(request) if request.framework == self.name else None

    @hookimpl
    def sdk_serialize_model(self, request: WeightsRequest) -> bytes | None:
        if request.framework != self.name:
            return None
        serialize = getattr(self._runtime(), "serialize", None)  # optional in the runtime module
        return None if serialize is None else serialize(request.model)  # bytes, checked by the manager

    @hookimpl
    def sdk_get_weights(self, request: WeightsRequest) -> dict[str, np.ndarray] | None:
        return request.model.get_weights() if request.framework == self.name else None

    @hookimpl
    def sdk_set_weights(self, request: WeightsRequest) -> bool | None:
        if request.framework != self.name:
            return None
        request.model.set_weights(request.weights)
        return True

    @hookimpl
    def sdk_get_optimizer_state(self, request: OptimizerStateRequest) -> OptimizerState | None:
        if request.framework != self.name:
            return None
        return _state_access(request.step, self.name).get_state()  # type: ignore[no-any-return]  # checked by the manager

    @hookimpl
    def sdk_set_optimizer_state(self, request: OptimizerStateRequest) -> bool | None:
        if request.framework != self.name:
            return None
        _state_access(request.step, self.name).set_state(request.state)
        return True


SINCE_0_1 = (
    "layer:add",
    "layer:concat",
    "layer:global_avg_pool",
    "precision:bf16",
    "precision:fp16",
    "schedule:exponential",
    "spec:graph",
    "training:accumulate",
    "training:masks",
    "training:remat",
)
"""What sdk-core added to the contract after 0.1. A runtime written for 0.1 cannot know these (its
``train_step`` would ignore a ``StepRequest``'s precision, say), so a plugin in the 0.1 form
declares them unsupported unless it passes its own ``unsupported``."""


def _legacy_form(
    name: str,
    legacy: tuple[Any, ...],
    runtime: str | None,
    version_of: Any,
    priority: int,
    unsupported: Iterable[str] | None,
) -> tuple[str, int, Any, int, Iterable[str]]:
    """The 0.1 positional call ``(name, runtime, distributions, priority=0)`` as today's
    keywords, with one ``DeprecationWarning`` that shows the call to write instead."""
    if len(legacy) > 3 or runtime is not None or version_of is not None:
        raise TypeError(
            f"FrameworkHooks('{name}', ...) takes either the 0.1 form (name, runtime, distributions, priority=0) "
            "or keywords after the name, not both"
        )
    runtime, version_of = legacy[0], legacy[1] if len(legacy) > 1 else None
    if not isinstance(runtime, str) or not isinstance(version_of, Mapping):
        raise TypeError(
            f"FrameworkHooks('{name}', runtime, distributions): runtime must be a module name and distributions a "
            f"mapping of distribution to device kinds (got {type(runtime).__name__}, {type(version_of).__name__})"
        )
    if len(legacy) == 3:
        priority = legacy[2]
    unsupported = SINCE_0_1 if unsupported is None else tuple(unsupported)
    kinds = {dist: tuple(k) for dist, k in version_of.items()}
    new = (
        f"FrameworkHooks({name!r}, runtime={runtime!r}, api=1, version_of={kinds!r}"
        + (f", priority={priority!r}" if priority else "")
        + f", unsupported={tuple(unsupported)!r})"
    )
    warnings.warn(
        f"the positional form FrameworkHooks({name!r}, {runtime!r}, {kinds!r}) is deprecated since sdk-core 0.2 "
        f"and will be removed in 0.3: write {new}, keeping in unsupported only what the runtime cannot do",
        DeprecationWarning,
        stacklevel=3,
    )
    return runtime, 1, version_of, priority, unsupported


def _state_access(step: Any, framework: str) -> Any:
    if not (hasattr(step, "get_state") and hasattr(step, "set_state")):
        raise NotImplementedError(
            f"the {framework} training step has no get_state()/set_state(): it cannot checkpoint optimizer state"
        )
    return step
