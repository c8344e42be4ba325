"""Records plugins report: devices, frameworks and readings (the requests the core sends are
in :mod:`sdk_core.plugins.requests`, loaded only when a model is built)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .._deprecated import module_getattr

DTYPES = ("float32", "float64")
PEAK_FLOPS_DTYPES = ("float64", "float32", "tfloat32", "bfloat16", "float16", "float8", "int8", "int4")
"""The number formats ``DeviceInfo.peak_flops`` may name."""
FEATURE_KINDS = ("layer", "optimizer", "loss", "schedule", "dtype", "training", "precision", "spec")
CAPABILITIES = ("train", "infer", "int8", "data_parallel", "sharded", "tensor_parallel", "generate")
"""What ``FrameworkInfo.capabilities`` may list."""


# -- validators: a record with a wrong field fails where it is made, naming the field ---------
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(instance: Any, attribute: attrs.Attribute[Any], what: str, value: Any) -> None:
    raise TypeError(f"{type(instance).__name__} '{attribute.name}' must be {what} (got {_show(value)})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        _fail(instance, attribute, "a string", value)


def _name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        _fail(instance, attribute, "a non-empty string", value)


def _optional_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        _fail(instance, attribute, "a string or None", value)


def _count(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _is_int(value) or value < 0:
        _fail(instance, attribute, "an int >= 0", value)


def _bytes(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not _is_int(value) or value < 0):
        _fail(instance, attribute, "an int number of bytes >= 0, or None", value)


def _optional_count(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not _is_int(value) or value < 0):
        _fail(instance, attribute, "an int >= 0, or None", value)


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not _is_number(value) or value < 0):
        _fail(instance, attribute, "a finite number >= 0, or None", value)


def _peak_flops(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for key, rate in value.items():
        if key not in PEAK_FLOPS_DTYPES:
            _fail(instance, attribute, f"keyed by dtype names ({', '.join(PEAK_FLOPS_DTYPES)})", key)
        if not _is_number(rate) or rate <= 0:
            _fail(instance, attribute, f"FLOP/s as a positive number for '{key}'", rate)


def _string_keys(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(isinstance(k, str) for k in value):
        _fail(instance, attribute, "a mapping with string keys", value)


def _names(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(isinstance(v, str) and v for v in value):
        _fail(instance, attribute, "a tuple of non-empty strings", value)


def _features(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for feature in value:
        kind, _, name = feature.partition(":") if isinstance(feature, str) else ("", "", "")
        if kind not in FEATURE_KINDS or not name:
            _fail(instance, attribute, f"feature ids such as 'layer:attention' ({', '.join(FEATURE_KINDS)})", feature)


def _capabilities(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if "infer" not in value or not set(value) <= set(CAPABILITIES):
        _fail(instance, attribute, f"a tuple of {', '.join(CAPABILITIES)} holding 'infer'", value)


def _refusals(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for name, reason in value.items():
        if name not in CAPABILITIES or not isinstance(reason, str) or not reason:
            _fail(instance, attribute, f"a mapping of capabilities ({', '.join(CAPABILITIES)}) to reasons", value)


def _backends(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for kind, names in value.items():
        if (
            not isinstance(kind, str)
            or not isinstance(names, tuple)
            or not all(isinstance(n, str) and n for n in names)
        ):
            _fail(instance, attribute, "a mapping of device kinds to tuples of backend names", value)


def _backend_tuples(value: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    return {kind: _str_tuple(names) for kind, names in _frozen_dict(value).items()}


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):  # "cpu" would become ('c', 'p', 'u')
        return (value,)
    return tuple(value)


def _frozen_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping (got {_show(value)})")
    return dict(value or {})


@attrs.frozen
class DeviceInfo:
    """One probed device.

    ``kind`` is ``cpu``, ``cuda``, ``tpu``, ``npu`` or a vendor's own kind; ``index`` counts
    devices of that kind from 0. Memory is in bytes (ints), ``compute_units`` in the device's
    own unit (SMs, cores), ``peak_flops`` maps a dtype name of :data:`PEAK_FLOPS_DTYPES`
    (``"float32"``, not ``"fp32"``) to floating point operations per second; ``Stack.auto()``
    ranks accelerators by ``peak_flops["float32"]``. Unknown figures are ``None`` (or absent
    from ``peak_flops``), never guessed. A field of the wrong type raises ``TypeError`` naming
    the field, so a plugin returning one is reported as failed.
    """

    kind: str = attrs.field(validator=_name)
    index: int = attrs.field(default=0, validator=_count)
    vendor: str = attrs.field(default="", validator=_text)
    name: str = attrs.field(default="", validator=_text)
    memory_total: int | None = attrs.field(default=None, validator=_bytes)
    memory_free: int | None = attrs.field(default=None, validator=_bytes)
    compute_units: int | None = attrs.field(default=None, validator=_optional_count)
    peak_flops: dict[str, float] = attrs.field(factory=dict, converter=_frozen_dict, validator=_peak_flops)
    driver: str = attrs.field(default="", validator=_text)
    plugin: str = attrs.field(default="", validator=_text)
    extra: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict, validator=_string_keys)

    @property
    def id(self) -> str:
        """``kind:index``, the name users type (``cuda:0``)."""
        return f"{self.kind}:{self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **attrs.asdict(self)}


@attrs.frozen
class FrameworkInfo:
    """What one framework plugin offers.

    ``version`` is the installed framework's version, ``None`` when it is not installed;
    ``distributions`` are the distributions whose installed version was looked up (named in
    the "not installed" error). ``device_kinds`` are the device kinds the plugin can drive.
    ``unsupported`` lists the feature ids it does not implement (``layer:attention``,
    ``optimizer:rmsprop``, ``loss:mse``, ``schedule:cosine``, ``dtype:float64``): the core
    refuses them with a clear error before calling the plugin, and the conformance kit checks
    they match the plugin's declared exclusions. Higher ``priority`` wins in ``Stack.auto()``
    on equal devices.

    ``capabilities`` (of :data:`CAPABILITIES`) say what the plugin does at all: ``train``
    (training steps), ``infer`` (inference, always), ``int8`` (int8 inference models made
    from calibration data, ``sdk_quantize_model``) and ``data_parallel`` (training over
    several processes on the framework's own distributed engine: ``sdk_init_distributed``,
    ``sdk_all_reduce`` and ``StepRequest.world``), ``sharded`` (ZeRO stages 1-3 on the framework's
    engine: ``StepRequest.sharded``), ``tensor_parallel`` (Megatron-style splits of dense and
    attention layers, ``Sharded.tensor`` > 1) and ``generate`` (autoregressive decoding with a
    key/value cache: ``sdk_make_decoder``). ``refusals`` gives, per capability the plugin lacks,
    the reason, which the core's refusal quotes. An inference-only plugin leaves out
    ``train``: training fails with a clear error before the plugin is called, and the
    conformance kit skips the training cases. ``backends`` names, per device kind, the engine
    parts the plugin runs there (ONNX Runtime's execution providers), best first; ``sdk
    devices`` shows them.
    """

    name: str = attrs.field(validator=_name)
    version: str | None = attrs.field(default=None, validator=_optional_text)
    device_kinds: tuple[str, ...] = attrs.field(default=("cpu",), converter=_str_tuple, validator=_names)
    unsupported: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_features)
    priority: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    plugin: str = attrs.field(default="", validator=_text)
    distributions: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_names)
    capabilities: tuple[str, ...] = attrs.field(
        default=("train", "infer"), converter=_str_tuple, validator=_capabilities
    )
    backends: dict[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_backend_tuples, validator=_backends)
    refusals: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict, validator=_refusals)

    @property
    def trains(self) -> bool:
        """Whether the plugin makes training steps (``train`` in ``capabilities``)."""
        return "train" in self.capabilities

    @property
    def installed(self) -> bool:
        return self.version is not None

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "installed": self.installed}


@attrs.frozen
class MemoryReading:
    """Memory in bytes (ints): in use now, the peak since the process (or the last
    ``sdk_reset_peak_memory``) and the total, where known."""

    used: int = attrs.field(validator=_count)
    peak: int | None = attrs.field(default=None, validator=_bytes)
    total: int | None = attrs.field(default=None, validator=_bytes)
    source: str = attrs.field(default="", validator=_text)


@attrs.frozen
class PowerReading:
    """Cumulative energy in joules and instantaneous power and its limit in watts, where
    readable (``None`` otherwise, never an invented figure)."""

    energy_j: float | None = attrs.field(validator=_non_negative)
    power_w: float | None = attrs.field(default=None, validator=_non_negative)
    limit_w: float | None = attrs.field(default=None, validator=_non_negative)
    source: str = attrs.field(default="", validator=_text)


# BuildRequest, StepRequest, PredictRequest and WeightsRequest lived here in 0.2.0: see sdk_core.plugins.requests
__getattr__ = module_getattr(__name__)[0]
