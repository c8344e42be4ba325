"""The plugin manager: discovery through entry points, isolation of broken plugins, and one
typed method per hook. Nothing is loaded until a manager is created (no import side effects).

Switches (the same exist as constructor arguments):

- ``SDK_CORE_AUTOLOAD=0``: load no entry points except those named in ``SDK_CORE_PLUGINS``;
- ``SDK_CORE_PLUGINS=numpy,torch``: with autoload off, the entry points to load;
- ``SDK_CORE_BLOCK=jax,tensorflow``: entry points never loaded.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import numpy as np
import pluggy

from ..errors import NotAvailableError, PluginError
from ..version import API_VERSION
from . import cpu, discovery, hookspecs
from .records import (
    BuildRequest,
    DeviceInfo,
    FrameworkInfo,
    MemoryReading,
    PowerReading,
    PredictRequest,
    StepRequest,
    WeightsRequest,
)

GROUP = "sdk_core"
T = TypeVar("T")

ENV_AUTOLOAD, ENV_PLUGINS, ENV_BLOCK = "SDK_CORE_AUTOLOAD", "SDK_CORE_PLUGINS", "SDK_CORE_BLOCK"


@attrs.define
class PluginStatus:
    """One plugin as discovery saw it: ``ok``, ``failed``, ``refused`` or ``blocked``."""

    name: str
    dist: str = ""
    status: str = "ok"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, str]:
        return attrs.asdict(self)


def _names(value: str | Iterable[str] | None) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        value = value.split(",")
    return {v.strip() for v in value if v.strip()}


class PluginManager:
    """Wraps ``pluggy.PluginManager`` for the ``sdk_core`` hooks."""

    def __init__(
        self,
        autoload: bool | None = None,
        plugins: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        if autoload is None:
            autoload = env.get(ENV_AUTOLOAD, "1").strip().lower() not in ("0", "false", "no", "off")
        self.autoload = autoload
        self.wanted = _names(env.get(ENV_PLUGINS) if plugins is None else plugins)
        self.blocked = _names(env.get(ENV_BLOCK) if block is None else block)
        self._pm = pluggy.PluginManager(GROUP)
        self._pm.add_hookspecs(hookspecs)
        self._status: dict[str, PluginStatus] = {}
        self._frameworks: dict[str, FrameworkInfo] | None = None
        self._devices: list[DeviceInfo] | None = None
        self.register(cpu, "cpu", dist="sdk-core (built-in)")
        self._load_entry_points()

    # -- discovery ------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        for ep in discovery.entry_points(GROUP):
            if ep.name in self._status:
                continue
            dist = ep.dist_label
            if ep.name in self.blocked:
                self._status[ep.name] = PluginStatus(ep.name, dist, "blocked", "blocked by configuration")
                continue
            if not self.autoload and ep.name not in self.wanted:
                continue
            try:
                module = ep.load()
            except ImportError as exc:
                self._fail(ep.name, dist, f"missing dependency on import: {exc}")
                continue
            except Exception as exc:  # a broken plugin must not break discovery
                self._fail(ep.name, dist, f"raised on import: {type(exc).__name__}: {exc}")
                continue
            self.register(module, ep.name, dist=dist)
        missing = self.wanted - set(self._status)
        for name in sorted(missing):
            self._fail(name, "", "named in the configuration but not installed")

    def _fail(self, name: str, dist: str, reason: str, status: str = "failed") -> PluginStatus:
        self._status[name] = PluginStatus(name, dist, status, reason)
        return self._status[name]

    def register(self, plugin: Any, name: str, dist: str = "") -> PluginStatus:
        """Register a plugin object (module or instance) after checking its API version and
        hook signatures. A plugin that fails a check is recorded, not raised."""
        version = getattr(plugin, "SDK_CORE_API", None)
        if version is None:
            return self._fail(name, dist, "declares no SDK_CORE_API version", "refused")
        if version != API_VERSION:
            return self._fail(
                name, dist, f"written for core API {version!r}; this sdk-core provides API {API_VERSION}", "refused"
            )
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:  # pluggy.PluginValidationError: wrong hook signature
            return self._fail(name, dist, f"invalid hook: {exc}")
        unknown = [c.name for c in self._pm.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            self._pm.unregister(plugin)
            return self._fail(name, dist, f"implements unknown hook {unknown[0]}")
        self._pm.check_pending()
        self._frameworks = self._devices = None
        self._status[name] = PluginStatus(name, dist)
        return self._status[name]

    def _disable(self, name: str, reason: str) -> None:
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        self._status[name].status, self._status[name].reason = "failed", reason

    def plugins(self) -> list[PluginStatus]:
        """Every plugin seen, in discovery order, with its status and reason."""
        return list(self._status.values())

    # -- collecting hooks -------------------------------------------------------------------
    def _collect(self, caller: pluggy.HookCaller, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation on its own; a plugin that raises is disabled and reported."""
        results = []
        for impl in reversed(caller.get_hookimpls()):
            try:
                results.append((impl.plugin_name, impl.function(**kwargs)))
            except Exception as exc:
                self._disable(impl.plugin_name, f"{caller.name} raised {type(exc).__name__}: {exc}")
        return results

    def frameworks(self) -> dict[str, FrameworkInfo]:
        """Every framework plugin's info by framework name."""
        if self._frameworks is None:
            found: dict[str, FrameworkInfo] = {}
            for plugin, info in self._collect(self._pm.hook.sdk_framework_info):
                if not isinstance(info, FrameworkInfo):
                    self._disable(plugin, f"sdk_framework_info returned {type(info).__name__}, not FrameworkInfo")
                elif info.name in found:
                    self._disable(
                        plugin, f"framework '{info.name}' is already provided by plugin '{found[info.name].plugin}'"
                    )
                else:
                    found[info.name] = attrs.evolve(info, plugin=plugin)
            self._frameworks = found
        return dict(self._frameworks)

    def devices(self) -> list[DeviceInfo]:
        """Every probed device, in plugin order."""
        if self._devices is None:
            found: list[DeviceInfo] = []
            for plugin, devices in self._collect(self._pm.hook.sdk_probe_devices):
                if not isinstance(devices, list) or not all(isinstance(d, DeviceInfo) for d in devices):
                    self._disable(
                        plugin, f"sdk_probe_devices must return a list of DeviceInfo (got {type(devices).__name__})"
                    )
                    continue
                found += [attrs.evolve(d, plugin=plugin) for d in devices]
            self._devices = found
        return list(self._devices)

    def add_commands(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Let every plugin add its subcommands (``sdk_add_commands``); one that fails is disabled."""
        self._collect(self._pm.hook.sdk_add_commands, subparsers=subparsers)

    # -- lookups ------------------------------------------------------------------------
    def framework(self, name: str) -> FrameworkInfo:
        """The framework plugin called ``name``, or a clear error listing what is installed."""
        frameworks = self.frameworks()
        if name not in frameworks:
            known = ", ".join(frameworks) or "none: pip install sdk-numpy for the default"
            raise NotAvailableError(f"unknown framework '{name}' (installed: {known})")
        info = frameworks[name]
        if not info.installed:
            raise NotAvailableError(
                f"framework '{name}' is not installed: plugin '{info.plugin}' needs it (pip install the framework)"
            )
        return info

    def device(self, ident: str) -> DeviceInfo:
        """The probed device named ``kind`` or ``kind:index`` (``cpu``, ``cuda:1``)."""
        kind, _, index = ident.partition(":")
        if index and not index.isdigit():
            raise NotAvailableError(f"device must look like 'cpu' or 'cuda:0' (got '{ident}')")
        for d in self.devices():
            if d.kind == kind and d.index == int(index or 0):
                return d
        known = ", ".join(d.id for d in self.devices()) or "none"
        raise NotAvailableError(f"unknown device '{ident}' (found: {known})")

    # -- framework hooks: dispatched to the plugin that owns the framework ----------------------
    def _dispatch(self, caller: pluggy.HookCaller, framework: str, **kwargs: Any) -> Any:
        plugin = self.framework(framework).plugin
        for impl in caller.get_hookimpls():
            if impl.plugin_name == plugin:
                try:
                    result = impl.function(**kwargs)
                except Exception as exc:
                    raise PluginError(plugin, caller.name, f"{type(exc).__name__}: {exc}") from exc
                if result is None:
                    raise PluginError(plugin, caller.name, "returned None for its own framework")
                return result
        raise PluginError(plugin, caller.name, "does not implement this hook")

    def build_model(self, request: BuildRequest) -> Any:
        return self._dispatch(self._pm.hook.sdk_build_model, request.framework, request=request)

    def make_train_step(self, request: StepRequest) -> Callable[[np.ndarray, np.ndarray], Any]:
        return self._callable(self._pm.hook.sdk_make_train_step, request)

    def make_predict(self, request: PredictRequest) -> Callable[[np.ndarray], np.ndarray]:
        return self._callable(self._pm.hook.sdk_make_predict, request)

    def _callable(self, caller: pluggy.HookCaller, request: Any) -> Callable[..., Any]:
        fn: Any = self._dispatch(caller, request.framework, request=request)
        if not callable(fn):  # the hook's answer is only known at run time
            raise PluginError(
                self.frameworks()[request.framework].plugin,
                caller.name,
                f"returned {type(fn).__name__}, not a callable",
            )
        return fn  # type: ignore[no-any-return]  # checked callable just above

    def get_weights(self, request: WeightsRequest) -> dict[str, np.ndarray]:
        weights = self._dispatch(self._pm.hook.sdk_get_weights, request.framework, request=request)
        if not isinstance(weights, dict):
            raise PluginError(
                self.frameworks()[request.framework].plugin,
                "sdk_get_weights",
                f"returned {type(weights).__name__}, not a dict",
            )
        return {k: np.asarray(v) for k, v in weights.items()}

    def set_weights(self, request: WeightsRequest) -> None:
        self._dispatch(self._pm.hook.sdk_set_weights, request.framework, request=request)

    # -- readings: the device's own plugin first, then any other that answers ------------------
    def _read(self, caller: pluggy.HookCaller, device: DeviceInfo, kind: type[T]) -> T | None:
        impls = sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name != device.plugin)
        for impl in impls:
            try:
                value = impl.function(device=device)
            except Exception:  # a sensor that fails reads as unavailable, never as a number
                continue
            if isinstance(value, kind):
                return value
        return None

    def read_memory(self, device: DeviceInfo) -> MemoryReading | None:
        return self._read(self._pm.hook.sdk_read_memory, device, MemoryReading)

    def reset_peak_memory(self, device: DeviceInfo) -> bool:
        """Start a new peak-memory window; False where no plugin can."""
        return self._read(self._pm.hook.sdk_reset_peak_memory, device, bool) is True

    def read_power(self, device: DeviceInfo) -> PowerReading | None:
        return self._read(self._pm.hook.sdk_read_power, device, PowerReading)


_default: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager, created (and plugins discovered) on first use."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default


def configure(
    autoload: bool | None = None, plugins: Iterable[str] | None = None, block: Iterable[str] | None = None
) -> PluginManager:
    """Replace the process-wide manager: switch autoload, name or block plugins."""
    global _default
    _default = PluginManager(autoload=autoload, plugins=plugins, block=block)
    return _default
