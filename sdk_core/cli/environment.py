"""``sdk plugins``, ``sdk devices``, ``sdk stacks`` and ``sdk doctor``: what is installed and
whether it works. None of them imports a deep-learning framework."""

from __future__ import annotations

import argparse
import platform
from typing import Any

from ..plugins.manager import get_manager
from ..plugins.records import FrameworkInfo
from ..runtime.console import table
from ..runtime.select import usable_stacks
from ..version import __version__
from .common import add_command, emit, gib


def plugins(args: argparse.Namespace) -> int:
    """``sdk plugins``: every plugin with its status and reason."""
    m = get_manager()
    frameworks = {f.plugin: f for f in m.frameworks().values()}
    kinds = {d.plugin for d in m.devices()}
    rows, data = [], []
    for p in m.plugins():
        fw = frameworks.get(p.name)
        role = "framework" if fw else "devices" if p.name in kinds else ""
        detail = (p.reason + (f"; {p.advice}" if p.advice else "")) or (
            f"{fw.name} {fw.version}" if fw and fw.installed else f"{fw.name} not installed" if fw else ""
        )
        rows.append((p.name, p.dist, role, p.status, detail))
        data.append({**p.to_dict(), "role": role, "framework": fw.to_dict() if fw else None})
    text = "\n".join([table(rows, ("plugin", "distribution", "provides", "status", "detail")), *deprecated(m)])
    return emit(args, data, text)


def deprecated(m: Any) -> list[str]:
    """One line per deprecated spelling a plugin used, for ``sdk plugins`` and ``sdk doctor``
    only: the other commands stay quiet about them."""
    return [f"deprecated: plugin '{p.name}' ({p.dist}): {d}" for p in m.plugins() for d in p.deprecations]


def devices(args: argparse.Namespace) -> int:
    """``sdk devices``: probed devices, the frameworks that can drive each and, where a
    framework names them, the backends it runs there (ONNX Runtime's execution providers)."""
    m = get_manager()
    devices = m.devices()
    drivers = {d.id: [f for f in m.frameworks().values() if f.installed and d.kind in f.device_kinds] for d in devices}

    def label(f: FrameworkInfo, kind: str) -> str:
        backends = f.backends.get(kind, ())
        return f"{f.name} ({', '.join(backends)})" if backends else f.name

    rows = [
        (
            d.id,
            d.vendor,
            d.name,
            gib(d.memory_total),
            gib(d.memory_free),
            d.compute_units,
            ", ".join(label(f, d.kind) for f in drivers[d.id]) or "-",
            d.plugin,
        )
        for d in devices
    ]
    data = [
        {
            **d.to_dict(),
            "frameworks": [f.name for f in drivers[d.id]],
            "backends": {f.name: list(f.backends.get(d.kind, ())) for f in drivers[d.id] if f.backends.get(d.kind)},
        }
        for d in devices
    ]
    return emit(
        args, data, table(rows, ("device", "vendor", "name", "memory", "free", "units", "frameworks", "plugin"))
    )


def stacks(args: argparse.Namespace) -> int:
    """``sdk stacks``: usable (framework, device) pairs, best first; ``auto`` marks the one
    ``--framework auto`` trains on (inference-only frameworks serve, they do not train)."""
    pairs = usable_stacks(get_manager())
    auto = next((p for p in pairs if p[0].trains), None)
    tasks = lambda fw: "train, infer" if fw.trains else "infer only"
    rows = [
        (f"{fw.name}/{dev.id}", fw.version, dev.name, tasks(fw), "yes" if (fw, dev) == auto else "")
        for fw, dev in pairs
    ]
    data = [
        {"framework": fw.name, "device": dev.id, "train": fw.trains, "auto": (fw, dev) == auto} for fw, dev in pairs
    ]
    text = (
        table(rows, ("stack", "version", "device", "tasks", "auto"))
        if pairs
        else "no usable stack: install a framework plugin (pip install sdk-numpy for the default)"
    )
    return emit(args, data, text)


def doctor(args: argparse.Namespace) -> int:
    """``sdk doctor``: what is installed, what is broken and what to do about it.

    Every hook runs first (frameworks, devices, stacks), so a plugin that failed in a hook,
    returned a wrong type, timed out or lost a name clash is reported with the rest."""
    m = get_manager()
    frameworks = m.frameworks()
    devices = m.devices()
    pairs = usable_stacks(m)
    plugins = m.plugins()
    problems = m.problems()
    problems += [
        f"framework '{f.name}' (plugin '{f.plugin}') is not installed: pip install "
        + (" or ".join(f.distributions) or "the framework")
        for f in frameworks.values()
        if not f.installed
    ]
    advice = (
        []
        if any(f.installed for f in frameworks.values())
        else ["no framework plugin installed: pip install sdk-numpy (the default) or sdk-torch, ..."]
    )
    data: dict[str, Any] = {
        "sdk_core": __version__,
        "python": platform.python_version(),
        "plugins": [p.to_dict() for p in plugins],
        "devices": [d.id for d in devices],
        "stacks": [f"{fw.name}/{dev.id}" for fw, dev in pairs],
        "problems": problems,
        "advice": advice,
    }
    lines = [
        f"sdk-core {__version__} on Python {data['python']}",
        f"plugins: {sum(p.ok for p in plugins)} ok of {len(plugins)}",
        f"devices: {', '.join(data['devices']) or 'none'}",
        f"stacks: {', '.join(data['stacks']) or 'none'}",
    ]
    lines += [f"problem: {p}" for p in problems] + [f"advice: {a}" for a in advice] + deprecated(m)
    if not problems and not advice:
        lines.append("all good")
    return emit(args, data, "\n".join(lines))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``plugins``, ``devices``, ``stacks`` and ``doctor``."""
    add_command(sub, "plugins", plugins, "list plugins with their status")
    add_command(sub, "devices", devices, "list probed devices")
    add_command(sub, "stacks", stacks, "list usable (framework, device) pairs, best first")
    add_command(sub, "doctor", doctor, "check the installation and explain problems")
