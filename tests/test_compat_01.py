"""Plugins and scripts written for sdk-core 0.1 keep working on this core, with one
DeprecationWarning per deprecated spelling naming its replacement.

The two plugins in tests/compat are written exactly as the 0.1.0 README taught and are
installed here by pip as real distributions (entry points and all) into a folder that the
subprocesses get on PYTHONPATH, so no other test sees them."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import sdk_core
from sdk_core._deprecated import MOVED
from sdk_core.plugins.framework import SINCE_0_1

from .conftest import Site

COMPAT = Path(__file__).parent / "compat"


@pytest.fixture(scope="module")
def old_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    site = Site(tmp_path_factory.mktemp("site01"))
    # --no-deps: their pin (sdk-core>=0.1,<0.2) is the 0.1 README's; this core provides their API 1
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site.root)]
    result = subprocess.run(
        [*install, str(COMPAT / "sdk-myaccel"), str(COMPAT / "sdk-npnpu")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return site


def run_kit(site: Site, folder: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest on a plugin's kit file in ``folder``, with ``site``'s distributions installed."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=folder, env=site.env(), capture_output=True, text=True, timeout=1200)


# -- scripts: every 0.1 module path --------------------------------------------------------------
@pytest.mark.parametrize("module", sorted(MOVED))
def test_every_01_module_path_works_with_one_warning_naming_the_new_home(module: str) -> None:
    old = importlib.import_module(module)
    for name, target in MOVED[module].items():
        home, _, new_name = target.partition(":")  # renamed where a new name follows the colon
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(old, name)
        assert value is getattr(importlib.import_module(home), new_name or name), f"{module}.{name}"
        if module == "sdk_core.hookspecs":
            continue  # warned once on import (pluggy reads hook specs statically): checked below
        assert len(caught) == 1 and caught[0].category is DeprecationWarning, f"{module}.{name}: {caught}"
        message = str(caught[0].message)
        assert f"'{module}.{name}'" in message and ("0.4" if module.endswith("records") else "0.3") in message
        public = name in sdk_core.__all__ and not new_name
        assert f"use 'sdk_core.{name}'" in message if public else f"use '{home}.{new_name or name}'" in message


def test_the_01_readme_imports_work_and_warn(old_site: Site) -> None:
    code = (
        "import warnings; warnings.simplefilter('default')\n"
        "from sdk_core.spec import ModelSpec\n"
        "from sdk_core.data import digits\n"
        "import sdk_core.stack, sdk_core.hookspecs, sdk_core.weights, sdk_core.zoo\n"
        "from sdk_core.framework import FrameworkHooks\n"
        "from sdk_core.zoo import lenet5\n"
        "spec = sdk_core.stack.load_spec\n"
        "print(ModelSpec is sdk_core.ModelSpec, FrameworkHooks is sdk_core.FrameworkHooks, sdk_core.zoo.mlp)\n"
    )
    result = old_site.run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True True <function mlp")
    lines = [l for l in result.stderr.splitlines() if "DeprecationWarning" in l]
    for old, new in [
        ("sdk_core.spec.ModelSpec", "sdk_core.ModelSpec"),
        ("sdk_core.data.digits", "sdk_core.digits"),
        ("sdk_core.hookspecs", "sdk_core.plugins.hookspecs"),
        ("sdk_core.framework.FrameworkHooks", "sdk_core.FrameworkHooks"),
        ("sdk_core.stack.load_spec", "sdk_core.load_spec"),
    ]:
        assert sum(f"'{old}' is deprecated" in l and f"use '{new}'" in l for l in lines) == 1, (old, lines)
    assert not any("zoo" in l for l in lines), "sdk_core.zoo is public API: no warning"
    assert len(lines) == 5


def test_frameworkhooks_01_positional_form_warns_with_the_call_to_write() -> None:
    with pytest.warns(DeprecationWarning, match=r"write FrameworkHooks\('x', runtime='m', api=1") as record:
        hooks = sdk_core.FrameworkHooks("x", "m", {"numpy": ("cpu",)}, 7)
    assert "priority=7" in str(record[0].message) and record[0].filename == __file__
    info = hooks.sdk_framework_info()
    assert (info.name, info.priority, info.device_kinds, hooks.SDK_CORE_API) == ("x", 7, ("cpu",), 1)
    assert info.unsupported == SINCE_0_1
    with pytest.warns(DeprecationWarning):
        declared = sdk_core.FrameworkHooks("x", "m", {"numpy": ("cpu",)}, unsupported=("training:remat",))
    assert declared.sdk_framework_info().unsupported == ("training:remat",)
    with pytest.raises(TypeError, match=r"either the 0\.1 form"):
        sdk_core.FrameworkHooks("x", "m", {"numpy": ("cpu",)}, runtime="m")
    with pytest.raises(TypeError, match="distributions a mapping"):
        sdk_core.FrameworkHooks("x", "m", ("cpu",))
    with pytest.raises(TypeError, match="needs the keyword arguments api, version_of"):
        sdk_core.FrameworkHooks("x", runtime="m")


# -- plugins: installed distributions ------------------------------------------------------------
@pytest.mark.needs_framework("numpy")
def test_01_plugins_load_and_deprecations_show_once_only_where_plugins_are_listed(old_site: Site) -> None:
    plugins = {p["name"]: p for p in old_site.sdk_json("plugins")}
    assert plugins["myaccel"]["status"] == plugins["npnpu"]["status"] == "ok"
    assert plugins["myaccel"]["deprecations"] == []
    npnpu = plugins["npnpu"]["deprecations"]
    assert len(npnpu) == 2 and "'sdk_core.framework.FrameworkHooks'" in npnpu[0] and "positional form" in npnpu[1]
    assert plugins["npnpu"]["framework"]["device_kinds"] == ["cpu", "fakenpu"]
    devices = old_site.sdk_json("devices")
    assert {"myaccel:0", "cpu:0"} <= {f"{d['kind']}:{d['index']}" for d in devices}

    table = old_site.sdk("plugins")
    assert table.returncode == 0, table.stderr
    shown = [l for l in table.stdout.splitlines() if l.startswith("deprecated: plugin 'npnpu'")]
    assert len(shown) == 2 and "Warning" not in table.stderr
    assert sum(l.startswith("deprecated:") for l in old_site.sdk("doctor").stdout.splitlines()) == 2
    for command in (["devices"], ["stacks"], ["predict", "--help"]):
        quiet = old_site.sdk(*command)
        assert quiet.returncode == 0, quiet.stderr
        assert "deprecat" not in (quiet.stdout + quiet.stderr).lower(), command


@pytest.mark.needs_framework("numpy")
def test_01_framework_plugin_trains_predicts_and_refuses_what_it_cannot_know(old_site: Site, tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    trained = old_site.sdk("train", "--framework", "npnpu", "--model", "mlp", "--epochs", "1", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    served = old_site.sdk("predict", "--framework", "numpy", "--weights", str(out), "--json")
    assert served.returncode == 0, served.stderr
    refused = old_site.sdk("train", "--framework", "npnpu", "--model", "resnet", "--epochs", "1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "framework 'npnpu' does not support layer add (declared unsupported" in refused.stderr


@pytest.mark.needs_framework("numpy")
def test_01_framework_plugin_passes_the_conformance_kit(old_site: Site, tmp_path: Path) -> None:
    shutil.copy(COMPAT / "sdk-npnpu" / "tests" / "test_conformance.py", tmp_path / "test_conformance.py")
    run = run_kit(old_site, tmp_path, "-x", "test_conformance.py")
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout.splitlines()[-1] and "failed" not in run.stdout.splitlines()[-1]


@pytest.mark.needs_framework("numpy")
def test_a_feature_used_but_not_declared_fails_the_kit_saying_what_to_declare(site: Site, tmp_path: Path) -> None:
    """A 0.1-style plugin that claims everything (``unsupported=()``) meets the kit like any
    other: the undeclared feature runs, fails, and the failure says what to declare."""
    site.add(
        "sdk-claims",
        "sdk_claims",
        "from sdk_core.framework import FrameworkHooks\n"
        "plugin = FrameworkHooks('claims', 'sdk_npnpu_runtime', {'numpy': ('cpu',)}, unsupported=())\n",
        entry="claims",
        target="sdk_claims:plugin",
    )
    site.module("sdk_npnpu_runtime", (COMPAT / "sdk-npnpu" / "sdk_npnpu" / "_runtime.py").read_text())
    (tmp_path / "test_kit.py").write_text(
        "from sdk_core.testing import ConformanceSuite\n\n\n"
        "class TestConformance(ConformanceSuite):\n    framework = 'claims'\n"
    )
    run = run_kit(site, tmp_path, "-k", "fp16_skips", "test_kit.py")
    assert run.returncode == 1, run.stdout[-3000:]
    assert (
        "this case uses layer:dense, layer:relu, loss:mse, optimizer:sgd, precision:fp16, which plugin 'claims'"
        in run.stdout
    )
    assert "declare it: FrameworkHooks(..., unsupported=(...))" in run.stdout
