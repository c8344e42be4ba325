"""The plugin contract as a third-party author meets it: each test installs real faulty plugin
distributions (``*.dist-info`` with ``entry_points.txt``, as pip lays them out) next to the
built-in cpu plugin and a good toy plugin, and checks what the user sees: exit code, message,
and that everything else keeps working."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

import sdk_core


def plugin(body: str) -> str:
    return "from sdk_core import hookimpl, DeviceInfo, FrameworkInfo\nSDK_CORE_API = 1\n" + body


def entries(site, **env) -> list[dict]:
    return site.sdk_json("plugins", **env)


def by_name(site, **env) -> dict[str, dict]:
    return {p["name"]: p for p in entries(site, **env)}


def test_sys_exit_at_import_or_in_a_hook_fails_only_that_plugin(site):
    site.add_toy()
    site.add("sdk-exit-import", "exit_import", "import sys\nsys.exit(3)\n")
    site.add("sdk-exit-hook", "exit_hook", plugin("@hookimpl\ndef sdk_probe_devices():\n    raise SystemExit(4)\n"))
    site.add(
        "sdk-exit-info",
        "exit_info",
        plugin("@hookimpl\ndef sdk_framework_info():\n    raise SystemExit('bye')\n"),
    )
    for command in ("plugins", "devices", "stacks", "doctor"):
        result = site.sdk(command)
        assert result.returncode == 0, (command, result.stderr)
    plugins = by_name(site)
    assert plugins["exit_import"]["status"] == "failed" and "SystemExit: 3" in plugins["exit_import"]["reason"]
    assert plugins["exit_hook"]["reason"] == "sdk_probe_devices raised SystemExit: 4"
    assert plugins["exit_info"]["reason"] == "sdk_framework_info raised SystemExit: bye"
    assert "SDK_CORE_BLOCK=exit_hook" in plugins["exit_hook"]["advice"]
    assert plugins["toy"]["status"] == "ok"
    assert {d["id"] for d in site.sdk_json("devices")} == {"cpu:0", "toy:0"}
    # the user's own process survives get_manager() too
    result = site.run("-c", "import sdk_core; m = sdk_core.get_manager(); m.devices(); print('alive')")
    assert result.returncode == 0 and result.stdout.strip() == "alive", result.stderr


HANGING = """
import os, time
@hookimpl
def sdk_probe_devices():
    open(os.environ["PROBE_MARK"], "w").close()
    time.sleep(60)
    return []
"""


def test_a_hanging_probe_costs_the_deadline_once_and_is_named(site, tmp_path):
    site.add_toy()
    site.add("sdk-wedged", "wedged", plugin(HANGING))
    mark = str(tmp_path / "probe-started")
    t0 = time.monotonic()
    result = site.sdk("devices", "--json", SDK_CORE_HOOK_TIMEOUT="1", PROBE_MARK=mark)
    elapsed = time.monotonic() - t0
    assert result.returncode == 0, result.stderr
    assert elapsed < 20, f"sdk devices waited {elapsed:.1f} s"
    assert {d["id"] for d in json.loads(result.stdout)} == {"cpu:0", "toy:0"}
    doctor = site.sdk_json("doctor", SDK_CORE_HOOK_TIMEOUT="1", PROBE_MARK=mark)
    assert any("wedged" in p and "timed out after 1 s in sdk_probe_devices" in p for p in doctor["problems"])


@pytest.mark.skipif(
    "numpy" not in sdk_core.PluginManager().frameworks() or importlib.util.find_spec("sklearn") is None,
    reason="trains with the sdk-numpy plugin on the digits (scikit-learn)",
)
def test_training_on_the_cpu_never_waits_for_accelerator_probes(site, tmp_path):
    site.add("sdk-wedged", "wedged", plugin(HANGING))
    mark = tmp_path / "probe-started"
    for framework in ("numpy", "auto"):
        result = site.sdk(
            "train",
            "--framework",
            framework,
            "--device",
            "cpu",
            "--model",
            "mlp",
            "--epochs",
            "1",
            PROBE_MARK=str(mark),
        )
        assert result.returncode == 0, result.stderr
        assert not mark.exists(), f"--framework {framework} --device cpu ran the accelerator probe"


def test_two_plugins_claiming_one_framework_are_both_refused_whatever_the_order(site):
    claim = plugin('@hookimpl\ndef sdk_framework_info():\n    return FrameworkInfo(name="toy", version="2.0")\n')
    site.add_toy()
    site.add("aaa-fasttoy", "fasttoy", claim)  # sorts before sdk-toy
    plugins = by_name(site)
    for name in ("toy", "fasttoy"):
        assert plugins[name]["status"] == "refused"
        reason = plugins[name]["reason"]
        assert reason.startswith("framework 'toy' is claimed by plugins"), reason
        assert "'fasttoy' (aaa-fasttoy 0.1)" in reason and "'toy' (sdk-toy 0.1)" in reason
        assert "SDK_CORE_BLOCK" in plugins[name]["advice"]
    result = site.run("-c", "import sdk_core; sdk_core.Stack('toy')")
    assert "unknown framework 'toy'" in result.stderr
    # blocking one by its distribution name settles it
    plugins = by_name(site, SDK_CORE_BLOCK="aaa-fasttoy")
    assert plugins["toy"]["status"] == "ok" and plugins["fasttoy"]["status"] == "blocked"


def test_every_entry_point_is_reported_even_with_the_same_name(site):
    site.add("sdk-one", "one", plugin(""), entry="twin")
    site.add("sdk-two", "two", plugin(""), entry="twin")
    site.add("sdk-fake-cpu", "fakecpu", plugin(""), entry="cpu")
    listed = entries(site)
    twins = [p for p in listed if p["name"] == "twin"]
    assert sorted(p["dist"] for p in twins) == ["sdk-one 0.1", "sdk-two 0.1"]
    assert all(p["status"] == "refused" and "claimed by sdk-one 0.1 and sdk-two 0.1" in p["reason"] for p in twins)
    cpus = [p for p in listed if p["name"] == "cpu"]
    assert [p["status"] for p in cpus] == ["ok", "refused"]
    assert "taken by the built-in plugin" in cpus[1]["reason"]


def test_doctor_reports_what_went_wrong_in_hooks(site):
    site.add_toy()
    site.add("sdk-wrong-type", "wrongtype", plugin("@hookimpl\ndef sdk_probe_devices():\n    return 'gpu0'\n"))
    site.add("sdk-raiser", "raiser", plugin("@hookimpl\ndef sdk_framework_info():\n    raise OSError('gone')\n"))
    doctor = site.sdk_json("doctor", SDK_CORE_BLOCK="toy")
    text = "\n".join(doctor["problems"])
    assert "wrongtype" in text and "must return a list of DeviceInfo (got str)" in text
    assert "raiser" in text and "sdk_framework_info raised OSError: gone" in text
    assert "plugin 'toy' (sdk-toy 0.1) blocked" in text and "remove 'toy' from SDK_CORE_BLOCK" in text
    assert "all good" not in site.sdk("doctor", SDK_CORE_BLOCK="toy").stdout


def test_records_with_wrong_field_types_fail_the_plugin_and_name_the_field(site):
    site.add_toy()
    bad = {
        "badmem": 'DeviceInfo(kind="bad", memory_total="16GB")',
        "badflops": 'DeviceInfo(kind="bad", peak_flops={"float32": "100 TFLOPS"})',
        "badkey": 'DeviceInfo(kind="bad", peak_flops={"fp32": 1e12})',
    }
    for name, record in bad.items():
        site.add(f"sdk-{name}", name, plugin(f"@hookimpl\ndef sdk_probe_devices():\n    return [{record}]\n"))
    result = site.sdk("devices")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    plugins = by_name(site)
    assert "'memory_total' must be an int number of bytes" in plugins["badmem"]["reason"]
    assert "'peak_flops' must be FLOP/s as a positive number for 'float32'" in plugins["badflops"]["reason"]
    assert "'peak_flops' must be keyed by dtype names" in plugins["badkey"]["reason"]
    assert all(plugins[n]["status"] == "failed" for n in bad) and plugins["toy"]["status"] == "ok"


def test_block_by_distribution_name_and_warnings_for_mistakes(site):
    site.add("sdk-bad-l", "bad_l", "raise RuntimeError('never import me')")
    site.add("sdk-unmarked", "unmarked", "SDK_CORE_API = 1\ndef sdk_probe_devices():\n    return []\n")
    result = site.sdk("plugins", "--json", SDK_CORE_BLOCK="sdk-bad-l,nothing-called-this")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["bad_l"]["status"] == "blocked"
    assert "sdk: warning: SDK_CORE_BLOCK names 'nothing-called-this', which matches no installed plugin" in (
        result.stderr
    )
    assert "plugin 'unmarked': sdk_probe_devices is not marked @hookimpl, so it is ignored" in result.stderr


def test_a_closed_pipe_ends_quietly(site):
    site.add_toy()
    process = subprocess.Popen(
        [sys.executable, "-m", "sdk_core", "plugins", "--json"],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before anything is written, as with `| head -0`
    _, err = process.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()


PARTIAL_RUNTIME = """
class Model:
    def set_weights(self, weights):
        pass

    def get_weights(self):
        return {}

def build(request):
    return Model()

def train_step(request):
    raise AssertionError("the core must refuse first")

def predict(model):
    raise AssertionError("the core must refuse first")
"""

NO_TRAIN_RUNTIME = """
def build(request):
    raise AssertionError("the core must refuse first")
def train_step(request):
    raise AssertionError("the core must refuse first")
def predict(model):
    raise AssertionError("the core must refuse first")
"""


def test_framework_hooks_say_what_they_mean(site):
    site.module("nofw_runtime", NO_TRAIN_RUNTIME)
    site.add(
        "sdk-nofw",
        "nofw",
        "from sdk_core import FrameworkHooks\n"
        "plugin = FrameworkHooks('nofw', runtime='nofw_runtime', api=1, version_of='nofw-engine')\n",
        target="nofw:plugin",
    )
    site.add(
        "sdk-oldfw",
        "oldfw",
        "from sdk_core import FrameworkHooks\n"
        "plugin = FrameworkHooks('oldfw', runtime='x', api=2, version_of='pluggy')\n",
        target="oldfw:plugin",
    )
    plugins = by_name(site)
    assert plugins["oldfw"]["status"] == "refused" and "written for core API 2" in plugins["oldfw"]["reason"]
    result = site.run("-c", "import sdk_core; sdk_core.Stack('nofw')")
    assert "framework 'nofw' is not installed: plugin 'nofw' looked for the distribution 'nofw-engine'" in (
        result.stderr
    )


def test_declared_unsupported_features_are_refused_before_the_plugin_runs(site):
    site.module("partial_runtime", PARTIAL_RUNTIME)
    site.add(
        "sdk-partial",
        "partial",
        "from sdk_core import FrameworkHooks\n"
        "plugin = FrameworkHooks('partial', runtime='partial_runtime', api=1, version_of='pluggy',\n"
        "                        unsupported=('optimizer:rmsprop', 'layer:attention', 'dtype:float64'))\n",
        target="partial:plugin",
    )
    code = """
import sdk_core
from sdk_core import Dense, ModelSpec, Optimizer, Stack, NotAvailableError
spec = ModelSpec(input_shape=(3,), layers=[Dense(2)])
stack = Stack("partial").build(spec)
for attempt in (lambda: stack.train_step("cross_entropy", Optimizer("rmsprop")),
                lambda: Stack("partial").build(spec, dtype="float64")):
    try:
        attempt()
    except NotAvailableError as exc:
        print(exc)
print(sorted(sdk_core.get_manager().framework("partial").unsupported))
"""
    result = site.run("-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert (
        lines[0] == "framework 'partial' does not support optimizer rmsprop (declared unsupported by plugin 'partial')"
    )
    assert lines[1] == "framework 'partial' does not support dtype float64 (declared unsupported by plugin 'partial')"
    assert lines[2] == "['dtype:float64', 'layer:attention', 'optimizer:rmsprop']"


SLOPPY_RUNTIME = """
import numpy as np

class Model:
    def __init__(self):
        self.w = {}
    def set_weights(self, weights):
        self.w.update({k: np.array(v) for k, v in weights.items()})
    def get_weights(self):
        return {k: v.copy() for k, v in self.w.items()}

def build(request):
    return Model()

def train_step(request):  # moves every weight and ignores request.masks
    model = request.model
    def step(x, y):
        for value in model.w.values():
            value += 0.1
        return 0.0
    return step

def predict(model):
    return lambda x: np.asarray(x) @ model.w["0.weight"] + model.w["0.bias"]
"""


def test_a_plugin_that_ignores_pruning_masks_is_named(site):
    site.module("sloppy_runtime", SLOPPY_RUNTIME)
    for name, unsupported in (("sloppy", "()"), ("honest", "('training:masks',)")):
        site.add(
            f"sdk-{name}",
            name,
            "from sdk_core import FrameworkHooks\n"
            f"plugin = FrameworkHooks('{name}', runtime='sloppy_runtime', api=1, version_of='pluggy',\n"
            f"                        unsupported={unsupported})\n",
            target=f"{name}:plugin",
        )
    code = """
import numpy as np
from sdk_core import Dense, ModelSpec, Stack, SdkError
spec = ModelSpec(input_shape=(3,), layers=[Dense(2)])
for name in ("sloppy", "honest"):
    stack = Stack(name).build(spec)
    try:
        stack.set_masks({"0.weight": np.array([[1, 0], [0, 1], [1, 1]])})
        stack.fit(np.ones((4, 3), np.float32), np.zeros(4, np.int64), epochs=1)
    except SdkError as exc:
        print(type(exc).__name__, exc)
"""
    result = site.run("-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == (
        "PluginError plugin 'sloppy' failed in sdk_make_train_step: its 'sloppy' training step let pruned "
        "weights of '0.weight' become nonzero (it ignores StepRequest.masks)"
    )
    assert lines[1] == (
        "NotAvailableError framework 'honest' does not support training masks (declared unsupported by plugin 'honest')"
    )
