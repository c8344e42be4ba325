"""Discovery through real (throwaway) distributions: isolation, switches, API versions."""

import json

BROKEN = {
    "raises_on_import": ("raise RuntimeError('boom at import')", "raised on import: RuntimeError: boom at import"),
    "missing_dep": ("import no_such_module_xyz", "missing dependency on import: No module named 'no_such_module_xyz'"),
    "bad_signature": (
        """
        from sdk_core import hookimpl
        SDK_CORE_API = 1
        @hookimpl
        def sdk_build_model(request, colour):
            return None
        """,
        "invalid hook",
    ),
    "raises_in_hook": (
        """
        from sdk_core import hookimpl
        SDK_CORE_API = 1
        @hookimpl
        def sdk_probe_devices():
            raise OSError('driver gone')
        """,
        "sdk_probe_devices raised OSError: driver gone",
    ),
    "wrong_type": (
        """
        from sdk_core import hookimpl
        SDK_CORE_API = 1
        @hookimpl
        def sdk_probe_devices():
            return "gpu0"
        """,
        "sdk_probe_devices must return a list of DeviceInfo (got str)",
    ),
    "future_api": (
        """
        from sdk_core import hookimpl
        SDK_CORE_API = 2
        @hookimpl
        def sdk_probe_devices():
            raise AssertionError('must never run')
        """,
        "written for core API 2; this sdk-core provides API 1",
    ),
    "unknown_hook": (
        """
        from sdk_core import hookimpl
        SDK_CORE_API = 1
        @hookimpl
        def sdk_probe_gadgets():
            return []
        """,
        "implements unknown hook sdk_probe_gadgets",
    ),
}


def _statuses(site, **env):
    return {p["name"]: p for p in site.sdk_json("plugins", **env)}


def test_good_plugin_is_found_and_its_device_listed(site):
    site.add_toy()
    plugins = _statuses(site)
    assert plugins["toy"]["status"] == "ok"
    assert plugins["toy"]["dist"] == "sdk-toy 0.1"
    assert plugins["toy"]["framework"]["name"] == "toy"
    devices = {d["id"]: d for d in site.sdk_json("devices")}
    assert devices["toy:0"]["name"] == "Toy chip" and devices["toy:0"]["plugin"] == "toy"
    assert "cpu:0" in devices


def test_each_broken_plugin_is_reported_and_the_rest_keep_working(site):
    site.add_toy()
    for name, (source, _) in BROKEN.items():
        site.add(f"sdk-{name}", name, source)
    plugins = _statuses(site)
    for name, (_, reason) in BROKEN.items():
        assert plugins[name]["status"] in ("failed", "refused"), name
        assert reason in plugins[name]["reason"], (name, plugins[name]["reason"])
    assert plugins["toy"]["status"] == "ok"
    assert {d["id"] for d in site.sdk_json("devices")} >= {"cpu:0", "toy:0"}
    doctor = site.sdk_json("doctor")
    assert any("raises_on_import" in p and "boom at import" in p for p in doctor["problems"])
    text = site.sdk("plugins").stdout
    assert "missing_dep" in text and "failed" in text


def test_import_sdk_core_never_fails_because_of_a_plugin(site):
    site.add("sdk-bad", "bad_plugin", "raise SystemError('nope')")
    result = site.run("-c", "import sdk_core; m = sdk_core.get_manager(); print(len(m.devices()))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_block_env_and_autoload_switch(site):
    site.add_toy()
    blocked = _statuses(site, SDK_CORE_BLOCK="toy")
    assert blocked["toy"]["status"] == "blocked"
    assert [d["id"] for d in site.sdk_json("devices", SDK_CORE_BLOCK="toy")] == ["cpu:0"]
    off = _statuses(site, SDK_CORE_AUTOLOAD="0")
    assert "toy" not in off and list(off) == ["cpu"]
    named = _statuses(site, SDK_CORE_AUTOLOAD="0", SDK_CORE_PLUGINS="toy")
    assert named["toy"]["status"] == "ok"


def test_the_same_switches_in_the_python_api(site):
    site.add_toy()
    code = """
import json, sdk_core
out = {}
m = sdk_core.configure(block=["toy"])
out["blocked"] = [p.status for p in m.plugins() if p.name == "toy"]
m = sdk_core.configure(autoload=False)
out["off"] = [p.name for p in m.plugins()]
m = sdk_core.configure(autoload=False, plugins=["toy"])
out["named"] = sorted(m.frameworks())
print(json.dumps(out))
"""
    result = site.run("-c", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"blocked": ["blocked"], "off": ["cpu"], "named": ["toy"]}


def test_discovery_imports_no_framework(site):
    site.add_toy()
    code = """
import sys, sdk_core.cli
for cmd in (["plugins"], ["devices"], ["stacks"], ["doctor"]):
    sdk_core.cli.main(cmd + ["--json"])
loaded = sorted(set(sys.modules) & {"torch", "tensorflow", "jax", "mindspore"})
print("LOADED", loaded)
"""
    result = site.run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LOADED []"


def test_framework_hook_errors_name_the_plugin():
    import pytest

    import sdk_core
    from sdk_core import FrameworkInfo, PluginError, hookimpl

    class Faulty:
        SDK_CORE_API = 1

        @hookimpl
        def sdk_framework_info(self):
            return FrameworkInfo(name="faulty", version="0")

        @hookimpl
        def sdk_build_model(self, request):
            if request.framework == "faulty":
                raise ValueError("cannot build")

    manager = sdk_core.PluginManager(autoload=False)
    assert manager.register(Faulty(), "sdk-faulty").ok
    with pytest.raises(PluginError, match="plugin 'sdk-faulty' failed in sdk_build_model: ValueError: cannot build"):
        sdk_core.Stack("faulty", "cpu", manager=manager).build(sdk_core.zoo.mlp())


TOY_RUNTIME = """
import numpy as np

class Model:
    def __init__(self, request):
        self.weights = {}
    def get_weights(self):
        return dict(self.weights)
    def set_weights(self, weights):
        self.weights.update(weights)

def build(request):
    return Model(request)

def predict(model):
    return lambda x: x @ model.weights["0.weight"] + model.weights["0.bias"]

def train_step(request):
    raise NotImplementedError("toy framework cannot train")
"""


def test_framework_hooks_drive_a_runtime_module(site):
    site.module("toyfw_runtime", TOY_RUNTIME)
    site.add(
        "sdk-toyfw",
        "toyfw",
        "from sdk_core import FrameworkHooks\n"
        "plugin = FrameworkHooks('toyfw', runtime='toyfw_runtime', api=1, version_of='pluggy', priority=3)\n",
        entry="toyfw",
        target="toyfw:plugin",
    )
    info = _statuses(site)["toyfw"]["framework"]
    assert info["installed"] and info["priority"] == 3 and info["device_kinds"] == ["cpu"]
    code = """
import sys, numpy as np, sdk_core
from sdk_core import Dense, ModelSpec, Stack
stack = Stack("toyfw").build(ModelSpec(input_shape=(3,), layers=[Dense(2)]), seed=1)
w = stack.get_weights()
x = np.ones((4, 3), np.float32)
assert np.allclose(stack.predict(x), x @ w["0.weight"] + w["0.bias"])
assert "toyfw_runtime" in sys.modules
try:
    stack.train_step()
except sdk_core.PluginError as exc:
    print(exc)
"""
    result = site.run("-c", code)
    assert result.returncode == 0, result.stderr
    assert (
        "plugin 'toyfw' failed in sdk_make_train_step: NotImplementedError: toy framework cannot train" in result.stdout
    )
