"""Data exchanged between the core and plugins: devices, frameworks, readings, requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # at run time only the names are needed: discovery stays light
    from ..model.optim import Optimizer
    from ..model.spec import ModelSpec

DTYPES = ("float32", "float64")


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _frozen_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class DeviceInfo:
    """One probed device.

    ``kind`` is ``cpu``, ``cuda``, ``tpu``, ``npu`` or a vendor's own kind; ``index`` counts
    devices of that kind from 0. Memory is in bytes, ``peak_flops`` maps a dtype name to
    floating point operations per second. Unknown figures are ``None``, never guessed.
    """

    kind: str = attrs.field(validator=attrs.validators.min_len(1))
    index: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    vendor: str = ""
    name: str = ""
    memory_total: int | None = None
    memory_free: int | None = None
    compute_units: int | None = None
    peak_flops: dict[str, float] = attrs.field(factory=dict, converter=_frozen_dict)
    driver: str = ""
    plugin: str = ""
    extra: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)

    @property
    def id(self) -> str:
        """``kind:index``, the name users type (``cuda:0``)."""
        return f"{self.kind}:{self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **attrs.asdict(self)}


@attrs.frozen
class FrameworkInfo:
    """What one framework plugin offers.

    ``version`` is the installed framework's version, ``None`` when it is not installed.
    ``device_kinds`` are the device kinds the plugin can drive. ``unsupported`` lists the
    features (layer types, optimizer names, losses) it does not implement, so users and the
    conformance kit see them. Higher ``priority`` wins in ``Stack.auto()`` on equal devices.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    version: str | None = None
    device_kinds: tuple[str, ...] = attrs.field(default=("cpu",), converter=_str_tuple)
    unsupported: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    priority: int = 0
    plugin: str = ""

    @property
    def installed(self) -> bool:
        return self.version is not None

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "installed": self.installed}


@attrs.frozen
class MemoryReading:
    """Memory in bytes: in use now and the peak since the process (or the plugin) started."""

    used: int
    peak: int | None = None
    total: int | None = None
    source: str = ""


@attrs.frozen
class PowerReading:
    """Cumulative energy in joules and instantaneous power in watts where readable."""

    energy_j: float | None
    power_w: float | None = None
    limit_w: float | None = None
    source: str = ""


def _check_dtype(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in DTYPES:
        raise ValueError(f"'{attribute.name}' must be one of {DTYPES} (got {value!r})")


@attrs.frozen
class BuildRequest:
    """Ask the plugin named ``framework`` to build ``spec`` on ``device``."""

    framework: str
    spec: ModelSpec
    device: DeviceInfo
    dtype: str = attrs.field(default="float32", validator=_check_dtype)
    seed: int = 0


@attrs.frozen
class StepRequest:
    """Ask for a compiled training step for ``model`` (built by the same plugin)."""

    framework: str
    model: Any
    spec: ModelSpec
    device: DeviceInfo
    loss: str
    optimizer: Optimizer
    seed: int = 0


@attrs.frozen
class PredictRequest:
    """Ask for an inference function for ``model``."""

    framework: str
    model: Any
    spec: ModelSpec
    device: DeviceInfo


@attrs.frozen
class WeightsRequest:
    """Read (``weights`` is None) or write the canonical weights of ``model``."""

    framework: str
    model: Any
    spec: ModelSpec
    weights: Mapping[str, Any] | None = None
