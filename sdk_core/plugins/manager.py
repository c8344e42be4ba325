"""The plugin manager: discovery through entry points, isolation of broken plugins, and one
typed method per hook. Nothing is loaded until a manager is created (no import side effects).

Switches (the same exist as constructor arguments):

- ``SDK_CORE_AUTOLOAD=0``: load no entry points except those named in ``SDK_CORE_PLUGINS``;
- ``SDK_CORE_PLUGINS=numpy,torch``: with autoload off, the plugins to load;
- ``SDK_CORE_BLOCK=jax,sdk-tensorflow``: plugins never loaded;
- ``SDK_CORE_HOOK_TIMEOUT=5``: seconds a probing or reading hook may take (0: no deadline).

A plugin is named by its entry-point name (``numpy``) or its distribution name as ``pip list``
shows it (``sdk-numpy``). Whatever a plugin does (raise, ``sys.exit()``, hang in a probe,
return the wrong type, claim a name another plugin has), it is reported by name with the
reason and what to do, and every other plugin keeps working.
"""

from __future__ import annotations

import argparse
import functools
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import numpy as np
import pluggy

from ..errors import NotAvailableError, PluginError, SdkWarning
from ..version import API_VERSION
from . import cpu, discovery, hookspecs
from .calls import Outcome, call, call_all
from .records import DeviceInfo, FrameworkInfo, MemoryReading, PowerReading

if TYPE_CHECKING:
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

GROUP = "sdk_core"
BUILTIN = "sdk-core (built-in)"
T = TypeVar("T")

ENV_AUTOLOAD, ENV_PLUGINS, ENV_BLOCK = "SDK_CORE_AUTOLOAD", "SDK_CORE_PLUGINS", "SDK_CORE_BLOCK"
ENV_TIMEOUT, DEFAULT_TIMEOUT = "SDK_CORE_HOOK_TIMEOUT", 5.0
HOOKS = frozenset(name for name in dir(hookspecs) if name.startswith("sdk_"))


@attrs.define
class PluginStatus:
    """One plugin as discovery saw it: ``ok``, ``failed``, ``refused`` or ``blocked``, with the
    reason and what the user can do about it."""

    name: str
    dist: str = ""
    status: str = "ok"
    reason: str = ""
    advice: str = ""
    #: the deprecated sdk_core spellings the plugin used while loading (0.1 module paths, the
    #: 0.1 form of ``FrameworkHooks``), each naming its replacement
    deprecations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _names(value: str | Iterable[str] | None) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        value = value.split(",")
    return {v.strip() for v in value if v.strip()}


def _timeout(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise NotAvailableError(f"'{ENV_TIMEOUT}' must be a number of seconds >= 0 (got {value!r})")
    return seconds


class PluginManager:
    """Wraps ``pluggy.PluginManager`` for the ``sdk_core`` hooks."""

    def __init__(
        self,
        autoload: bool | None = None,
        plugins: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        env: Mapping[str, str] | None = None,
        hook_timeout: float | None = None,
    ) -> None:
        env = os.environ if env is None else env
        if autoload is None:
            autoload = env.get(ENV_AUTOLOAD, "1").strip().lower() not in ("0", "false", "no", "off")
        self.autoload = autoload
        self.wanted = _names(env.get(ENV_PLUGINS) if plugins is None else plugins)
        self.blocked = _names(env.get(ENV_BLOCK) if block is None else block)
        self.hook_timeout = _timeout(env.get(ENV_TIMEOUT, DEFAULT_TIMEOUT) if hook_timeout is None else hook_timeout)
        self.warnings: list[str] = []
        self._pm = pluggy.PluginManager(GROUP)
        self._pm.add_hookspecs(hookspecs)
        self._status: dict[str, PluginStatus] = {}
        self._frameworks: dict[str, FrameworkInfo] | None = None
        self._devices: list[DeviceInfo] | None = None
        self.register(cpu, "cpu", dist=BUILTIN)
        self._load_entry_points()

    # -- discovery ------------------------------------------------------------------------
    def _matches(self, names: set[str], ep: discovery.EntryPoint) -> str | None:
        """The entry of ``names`` naming ``ep`` by entry-point or distribution name."""
        dist = ep.dist.name
        return next((n for n in sorted(names) if n == ep.name or discovery.normalize(n) == dist), None)

    def _load_entry_points(self) -> None:
        used: set[str] = set()
        chosen: dict[str, list[discovery.EntryPoint]] = {}
        for ep in discovery.entry_points(GROUP):
            hit = self._matches(self.blocked, ep)
            if hit is not None:
                used.add(hit)
                self._record(
                    ep.name,
                    ep.dist_label,
                    "blocked",
                    f"blocked by configuration ('{hit}')",
                    f"remove '{hit}' from {ENV_BLOCK} to load it",
                )
            elif self.autoload or self._matches(self.wanted, ep) is not None:
                chosen.setdefault(ep.name, []).append(ep)
        for name, eps in chosen.items():
            if name in self._status and self._status[name].dist == BUILTIN:
                for ep in eps:
                    self._record(
                        name,
                        ep.dist_label,
                        "refused",
                        f"entry-point name '{name}' is taken by the built-in plugin",
                        f"the distribution {ep.dist_label} must rename its entry point",
                    )
            elif len(eps) > 1:
                labels = " and ".join(ep.dist_label for ep in eps)
                for ep in eps:
                    self._record(
                        name,
                        ep.dist_label,
                        "refused",
                        f"entry-point name '{name}' is claimed by {labels}",
                        f"uninstall one, or block one with {ENV_BLOCK}=<distribution>",
                    )
            else:
                self._load(eps[0])
        for entry in sorted(self.blocked - used):
            self._warn(f"{ENV_BLOCK} names '{entry}', which matches no installed plugin")
        seen = {p.name for p in self._status.values()} | {
            discovery.normalize(p.dist.split()[0]) for p in self._status.values() if p.dist
        }
        for name in sorted(n for n in self.wanted if n not in seen and discovery.normalize(n) not in seen):
            self._record(
                name,
                "",
                "failed",
                "named in the configuration but not installed",
                f"pip install it, or remove it from {ENV_PLUGINS}",
            )

    def _load(self, ep: discovery.EntryPoint) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            outcome = call(ep.load)
        used = tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)))
        for w in caught:  # anything else goes on as if not caught
            if not issubclass(w.category, DeprecationWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if outcome.error is None:
            status = self.register(outcome.value, ep.name, dist=ep.dist_label)
            status.deprecations = used
            for message in used:  # once per process and plugin: Python's filters dedupe by text
                warnings.warn(f"plugin '{ep.name}': {message}", DeprecationWarning, stacklevel=2)
        elif isinstance(outcome.exception, ImportError):
            self._record(ep.name, ep.dist_label, "failed", f"missing dependency on import: {outcome.exception}")
        else:
            self._record(ep.name, ep.dist_label, "failed", f"raised on import: {outcome.error}")

    def _record(self, name: str, dist: str, status: str, reason: str, advice: str = "") -> PluginStatus:
        """Remember one plugin's status; a second plugin of the same name gets its own entry."""
        if not advice and status == "failed":
            advice = f"fix or uninstall {dist or name}, or block it with {ENV_BLOCK}={name}"
        key = name if name not in self._status or self._status[name].dist == dist else f"{name} ({dist})"
        self._status[key] = PluginStatus(name, dist, status, reason, advice)
        return self._status[key]

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, SdkWarning, stacklevel=3)

    def register(self, plugin: Any, name: str, dist: str = "") -> PluginStatus:
        """Register a plugin object (module or instance) after checking its API version and
        hook signatures. A plugin that fails a check is recorded, not raised."""
        version = call(getattr, plugin, "SDK_CORE_API", None).value
        if version is None:
            return self._record(
                name,
                dist,
                "refused",
                "declares no SDK_CORE_API version",
                "the plugin must set SDK_CORE_API (see the plugin guide)",
            )
        if version != API_VERSION:
            return self._record(
                name,
                dist,
                "refused",
                f"written for core API {version!r}; this sdk-core provides API {API_VERSION}",
                "install a release of the plugin written for this sdk-core",
            )
        outcome = call(self._pm.register, plugin, name=name)
        if outcome.error is not None:  # pluggy.PluginValidationError: wrong hook signature
            return self._record(name, dist, "failed", f"invalid hook: {outcome.exception}")
        unknown = [c.name for c in self._pm.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            self._pm.unregister(plugin)
            return self._record(name, dist, "failed", f"implements unknown hook {unknown[0]}")
        self._pm.check_pending()
        for attr in sorted(HOOKS - {c.name for c in self._pm.get_hookcallers(plugin) or []}):
            fn = call(getattr, plugin, attr, None).value
            if callable(fn):
                self._warn(f"plugin '{name}': {attr} is not marked @hookimpl, so it is ignored")
        self._frameworks = self._devices = None
        return self._record(name, dist, "ok", "")

    def _disable(self, name: str, reason: str, status: str = "failed", advice: str = "") -> None:
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        entry = self._status[name]
        entry.status, entry.reason = status, reason
        entry.advice = advice or f"fix or uninstall {entry.dist or name}, or block it with {ENV_BLOCK}={name}"

    def plugins(self) -> list[PluginStatus]:
        """Every plugin seen, in discovery order, with its status, reason and advice."""
        return list(self._status.values())

    # -- collecting hooks -------------------------------------------------------------------
    def _collect(self, caller: pluggy.HookCaller, timeout: float | None = None, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation on its own (side by side, within the deadline when one is
        given); a plugin that fails or runs out of time is disabled and reported."""
        impls = {impl.plugin_name: impl.function for impl in reversed(caller.get_hookimpls())}
        # the core's own hook code (the cpu plugin, FrameworkHooks) runs here; plugin code under the deadline
        own = {n for n, f in impls.items() if getattr(f, "__module__", "").startswith("sdk_core.")}
        outcomes = call_all({n: functools.partial(f, **kwargs) for n, f in impls.items() if n in own}, None)
        outcomes |= call_all({n: functools.partial(f, **kwargs) for n, f in impls.items() if n not in own}, timeout)
        outcomes = {n: outcomes[n] for n in impls}
        results = []
        for plugin, outcome in outcomes.items():
            if outcome.error is None:
                results.append((plugin, outcome.value))
            else:
                self._disable(plugin, self._failure(caller.name, outcome))
        return results

    @staticmethod
    def _failure(hook: str, outcome: Outcome) -> str:
        return f"{outcome.error} in {hook}" if outcome.timed_out else f"{hook} raised {outcome.error}"

    def frameworks(self) -> dict[str, FrameworkInfo]:
        """Every framework plugin's info by framework name. Two plugins that claim the same
        framework are both refused: the result never depends on the order of discovery."""
        if self._frameworks is None:
            claims: dict[str, list[tuple[str, FrameworkInfo]]] = {}
            for plugin, info in self._collect(self._pm.hook.sdk_framework_info, self.hook_timeout):
                if not isinstance(info, FrameworkInfo):
                    self._disable(plugin, f"sdk_framework_info returned {type(info).__name__}, not FrameworkInfo")
                else:
                    claims.setdefault(info.name, []).append((plugin, info))
            found: dict[str, FrameworkInfo] = {}
            for name, owners in claims.items():
                if len(owners) == 1:
                    found[name] = attrs.evolve(owners[0][1], plugin=owners[0][0])
                    continue
                labels = " and ".join(f"'{p}' ({self._status[p].dist})" for p, _ in owners)
                for plugin, _ in owners:
                    self._disable(
                        plugin,
                        f"framework '{name}' is claimed by plugins {labels}",
                        "refused",
                        f"block the one you do not want: {ENV_BLOCK}=<its entry point or distribution>",
                    )
            self._frameworks = found
        return dict(self._frameworks)

    def _probe(self, only: set[str] | None = None) -> list[DeviceInfo]:
        found: list[DeviceInfo] = []
        caller = self._pm.hook.sdk_probe_devices
        if only is not None:
            caller = self._pm.subset_hook_caller(
                "sdk_probe_devices", [p for n, p in self._pm.list_name_plugin() if n not in only]
            )
        for plugin, devices in self._collect(caller, self.hook_timeout):
            if not isinstance(devices, list) or not all(isinstance(d, DeviceInfo) for d in devices):
                got = type(devices).__name__ if not isinstance(devices, list) else "a list holding other objects"
                self._disable(plugin, f"sdk_probe_devices must return a list of DeviceInfo (got {got})")
                continue
            found += [attrs.evolve(d, plugin=plugin) for d in devices]
        return found

    def devices(self) -> list[DeviceInfo]:
        """Every probed device, in plugin order (all plugins probe side by side, each within
        the hook deadline)."""
        if self._devices is None:
            self._devices = self._probe()
        return list(self._devices)

    def add_commands(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Let every plugin add its subcommands (``sdk_add_commands``, within the hook deadline:
        every ``sdk`` command runs it); one that fails or hangs is disabled."""
        self._collect(self._pm.hook.sdk_add_commands, self.hook_timeout, subparsers=subparsers)

    def problems(self) -> list[str]:
        """One line per plugin that is not ok (with what to do) and per warning."""
        lines = [
            f"plugin '{p.name}'{f' ({p.dist})' if p.dist else ''} {p.status}: {p.reason}"
            + (f"; {p.advice}" if p.advice else "")
            for p in self._status.values()
            if not p.ok
        ]
        return lines + [f"warning: {w}" for w in self.warnings]

    # -- lookups ------------------------------------------------------------------------
    def framework(self, name: str) -> FrameworkInfo:
        """The framework plugin called ``name``, or a clear error listing what is installed."""
        frameworks = self.frameworks()
        if name not in frameworks:
            known = ", ".join(frameworks) or "none: pip install sdk-numpy for the default"
            raise NotAvailableError(f"unknown framework '{name}' (installed: {known})")
        info = frameworks[name]
        if not info.installed:
            looked = " or ".join(f"'{d}'" for d in info.distributions) or "its framework"
            raise NotAvailableError(
                f"framework '{name}' is not installed: plugin '{info.plugin}' looked for the distribution "
                f"{looked} (pip install {info.distributions[0] if info.distributions else 'it'})"
            )
        return info

    def device(self, ident: str) -> DeviceInfo:
        """The probed device named ``kind`` or ``kind:index`` (``cpu``, ``cuda:1``)."""
        kind, _, index = ident.partition(":")
        if index and not index.isdigit():
            raise NotAvailableError(f"device must look like 'cpu' or 'cuda:0' (got '{ident}')")
        if kind == "cpu" and self._devices is None:  # the built-in probe alone: no accelerator waits
            for d in self._probe(only={"cpu"}):
                if d.index == int(index or 0):
                    return d
        for d in self.devices():
            if d.kind == kind and d.index == int(index or 0):
                return d
        known = ", ".join(d.id for d in self.devices()) or "none"
        raise NotAvailableError(f"unknown device '{ident}' (found: {known})")

    # -- framework hooks: dispatched to the plugin that owns the framework ----------------------
    def _dispatch(self, caller: pluggy.HookCaller, framework: str, optional: bool = False, **kwargs: Any) -> Any:
        """The owning plugin's answer; with ``optional``, ``None`` (not implemented, or no
        answer) is an answer too."""
        plugin = self.framework(framework).plugin
        for impl in caller.get_hookimpls():
            if impl.plugin_name == plugin:
                outcome = call(impl.function, **kwargs)
                if isinstance(outcome.exception, NotAvailableError):  # "cannot here", not a failure
                    raise outcome.exception
                if outcome.error is not None:
                    raise PluginError(plugin, caller.name, outcome.error) from outcome.exception
                result = outcome.value
                if result is None and not optional:
                    raise PluginError(plugin, caller.name, "returned None for its own framework")
                return result
        if optional:
            return None
        raise PluginError(plugin, caller.name, "does not implement this hook")

    def build_model(self, request: BuildRequest) -> Any:
        return self._dispatch(self._pm.hook.sdk_build_model, request.framework, request=request)

    def make_train_step(self, request: StepRequest) -> Callable[[np.ndarray, np.ndarray], Any]:
        return self._callable(self._pm.hook.sdk_make_train_step, request)

    def make_predict(self, request: PredictRequest) -> Callable[[np.ndarray], np.ndarray]:
        return self._callable(self._pm.hook.sdk_make_predict, request)

    def make_decoder(self, request: DecodeRequest) -> Any:
        """A key/value-cache decoder from the owning plugin (``generate`` checked by the caller)."""
        decoder = self._dispatch(self._pm.hook.sdk_make_decoder, request.framework, request=request)
        for method in ("prefill", "step"):
            if not callable(getattr(decoder, method, None)):
                raise PluginError(
                    self.frameworks()[request.framework].plugin,
                    "sdk_make_decoder",
                    f"returned {type(decoder).__name__}, which has no '{method}' method",
                )
        return decoder

    def _callable(self, caller: pluggy.HookCaller, request: Any) -> Callable[..., Any]:
        fn: Any = self._dispatch(caller, request.framework, request=request)
        if not callable(fn):  # the hook's answer is only known at run time
            raise PluginError(
                self.frameworks()[request.framework].plugin,
                caller.name,
                f"returned {type(fn).__name__}, not a callable",
            )
        return fn  # type: ignore[no-any-return]  # checked callable just above

    def _typed(self, caller: pluggy.HookCaller, request: Any, kind: type[T]) -> T:
        """The owning plugin's answer, which must be a ``kind``."""
        value = self._dispatch(caller, request.framework, request=request)
        if not isinstance(value, kind):
            raise PluginError(
                self.frameworks()[request.framework].plugin,
                caller.name,
                f"returned {type(value).__name__}, not {kind.__name__}",
            )
        return value

    def init_distributed(self, request: DistributedRequest) -> None:
        """The owning plugin joins the data-parallel job (``data_parallel`` checked by the caller)."""
        self._dispatch(self._pm.hook.sdk_init_distributed, request.framework, request=request)

    def all_reduce(self, request: AllReduceRequest) -> np.ndarray:
        """The sums of ``request.values`` over every rank, from the owning plugin."""
        values = self._dispatch(self._pm.hook.sdk_all_reduce, request.framework, request=request)
        return np.asarray(values, dtype=np.float64)

    def quantize_model(self, request: QuantizeRequest) -> Any:
        """An int8 inference model from the owning plugin (``int8`` capability checked by the caller)."""
        return self._dispatch(self._pm.hook.sdk_quantize_model, request.framework, request=request)

    def serialize_model(self, request: WeightsRequest) -> bytes | None:
        """The model's file as the framework runs it, or ``None`` when it keeps none."""
        data = self._dispatch(self._pm.hook.sdk_serialize_model, request.framework, optional=True, request=request)
        if data is not None and not isinstance(data, bytes):
            raise PluginError(
                self.frameworks()[request.framework].plugin,
                "sdk_serialize_model",
                f"returned {type(data).__name__}, not bytes",
            )
        return data

    def get_weights(self, request: WeightsRequest) -> dict[str, np.ndarray]:
        weights = self._typed(self._pm.hook.sdk_get_weights, request, dict)
        return {k: np.asarray(v) for k, v in weights.items()}

    def set_weights(self, request: WeightsRequest) -> None:
        self._dispatch(self._pm.hook.sdk_set_weights, request.framework, request=request)

    def get_optimizer_state(self, request: OptimizerStateRequest) -> OptimizerState:
        """The optimizer state of a training step, in the canonical layout."""
        from ..model.optim import OptimizerState  # not at import: discovery stays light

        return self._typed(self._pm.hook.sdk_get_optimizer_state, request, OptimizerState)

    def set_optimizer_state(self, request: OptimizerStateRequest) -> None:
        self._dispatch(self._pm.hook.sdk_set_optimizer_state, request.framework, request=request)

    # -- readings: the device's own plugin first, then any other that answers ------------------
    def _read(self, caller: pluggy.HookCaller, device: DeviceInfo, kind: type[T]) -> T | None:
        """The first reading of type ``kind``; a sensor that fails reads as unavailable, never
        as a number, and one that does not answer within the deadline disables its plugin."""
        impls = sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name != device.plugin)
        for impl in impls:
            outcome = call_all({impl.plugin_name: functools.partial(impl.function, device=device)}, self.hook_timeout)
            result = outcome[impl.plugin_name]
            if result.timed_out:
                self._disable(impl.plugin_name, self._failure(caller.name, result))
            elif isinstance(result.value, kind):
                return result.value
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
    autoload: bool | None = None,
    plugins: Iterable[str] | None = None,
    block: Iterable[str] | None = None,
    hook_timeout: float | None = None,
) -> PluginManager:
    """Replace the process-wide manager: switch autoload, name or block plugins (by entry-point
    or distribution name), set the deadline of probing and reading hooks in seconds."""
    global _default
    _default = PluginManager(autoload=autoload, plugins=plugins, block=block, hook_timeout=hook_timeout)
    return _default
