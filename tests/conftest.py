"""Fixtures: throwaway plugin distributions installed into a temporary site directory."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sdk_core

FRAMEWORKS = ("torch", "tensorflow", "jax", "mindspore")

TOY_PLUGIN = """
from sdk_core import hookimpl, DeviceInfo, FrameworkInfo
SDK_CORE_API = 1

@hookimpl
def sdk_framework_info():
    return FrameworkInfo(name="toy", version="1.0", device_kinds=("cpu", "toy"))

@hookimpl
def sdk_probe_devices():
    return [DeviceInfo(kind="toy", index=0, vendor="Toys", name="Toy chip", memory_total=2**30)]
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_framework(name): skip unless that framework's plugin is installed")


@functools.cache
def _installed() -> frozenset[str]:
    return frozenset(sdk_core.PluginManager().frameworks())


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_framework"):
        if mark.args[0] not in _installed():
            pytest.skip(f"needs the sdk-{mark.args[0]} plugin")


class Site:
    """A directory on ``PYTHONPATH`` holding real distributions (``*.dist-info`` with an
    ``entry_points.txt``), exactly as pip lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(self, dist: str, module: str, source: str, entry: str | None = None, target: str | None = None) -> None:
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[sdk_core]\n{entry or module} = {target or module}\n")

    def add_toy(self) -> None:
        """A well-behaved plugin, ``sdk-toy``: framework ``toy`` and a ``toy:0`` device."""
        self.add("sdk-toy", "sdk_toy", TOY_PLUGIN, entry="toy")

    def module(self, name: str, source: str) -> None:
        """A plain module beside the distributions (a plugin's private runtime)."""
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SDK_CORE_")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(extra)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], env=self.env(**extra), capture_output=True, text=True, timeout=300
        )

    def sdk(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return self.run("-m", "sdk_core", *args, **extra)

    def sdk_json(self, *args: str, **extra: str):
        result = self.sdk(*args, "--json", **extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site")
