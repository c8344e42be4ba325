"""Stack.auto() policies, strict mode and device lookups, with in-process plugins."""

import pytest

import sdk_core
from sdk_core import DeviceInfo, FrameworkInfo, NotAvailableError, hookimpl, zoo
from sdk_core.model.estimate import training_bytes
from sdk_core.runtime.select import choose


class Accelerators:
    """Two probed accelerators of different speed and memory."""

    SDK_CORE_API = 1

    @hookimpl
    def sdk_probe_devices(self):
        return [
            DeviceInfo(kind="xpu", index=0, name="small fast", memory_free=2**20, peak_flops={"float32": 100e12}),
            DeviceInfo(kind="xpu", index=1, name="big slow", memory_free=2**34, peak_flops={"float32": 10e12}),
        ]


class Framework:
    def __init__(self, name, kinds, priority=0, version="1"):
        self.info = FrameworkInfo(name=name, version=version, device_kinds=kinds, priority=priority)

    SDK_CORE_API = 1

    @hookimpl
    def sdk_framework_info(self):
        return self.info


def manager(*plugins):
    m = sdk_core.PluginManager(autoload=False)
    for i, plugin in enumerate(plugins):
        assert m.register(plugin, f"p{i}").ok
    return m


def test_accelerator_policy_prefers_the_fastest_accelerator_then_priority():
    m = manager(Accelerators(), Framework("a", ("cpu", "xpu")), Framework("b", ("cpu", "xpu"), priority=5))
    fw, dev = choose(m)
    assert (fw.name, dev.id) == ("b", "xpu:0")
    names = [(f.name, d.id) for f, d in sdk_core.usable_stacks(m)]
    assert names[-2:] == [("b", "cpu:0"), ("a", "cpu:0")]
    assert sdk_core.Stack.auto(manager=m).device.id == "xpu:0"


def test_memory_policy_skips_devices_the_model_does_not_fit():
    m = manager(Accelerators(), Framework("a", ("cpu", "xpu")))
    spec = zoo.lenet5()
    assert training_bytes(spec, 32) > 2**20
    _, dev = choose(m, "memory", spec=spec, batch_size=32)
    assert dev.id == "xpu:1"
    with pytest.raises(NotAvailableError, match=r"no device has .* MiB free"):
        choose(m, "memory", spec=spec, batch_size=10**9)


def test_strict_refuses_the_cpu_and_device_filter():
    m = manager(Framework("a", ("cpu",)))
    assert choose(m)[1].id == "cpu:0"
    with pytest.raises(NotAvailableError, match="strict: no accelerator"):
        choose(m, strict=True)
    m2 = manager(Accelerators(), Framework("a", ("cpu",)))
    with pytest.raises(NotAvailableError, match="no installed framework drives xpu:1"):
        choose(m2, device="xpu:1")
    with pytest.raises(NotAvailableError, match="unknown device 'xpu:9'"):
        choose(m2, device="xpu:9")


def test_not_installed_framework_and_bad_policy():
    m = manager(Framework("ghost", ("cpu",), version=None))
    with pytest.raises(NotAvailableError, match="no usable framework"):
        choose(m)
    with pytest.raises(NotAvailableError, match="framework 'ghost' is not installed"):
        sdk_core.Stack("ghost", manager=m)
    with pytest.raises(sdk_core.SdkError, match="'policy' must be one of"):
        choose(manager(Framework("a", ("cpu",))), "cheapest")


def test_a_framework_cannot_run_on_a_device_kind_it_does_not_drive():
    m = manager(Accelerators(), Framework("a", ("cpu",)))
    with pytest.raises(NotAvailableError, match="framework 'a' cannot run on xpu:0 \\(it drives: cpu\\)"):
        sdk_core.Stack("a", "xpu:0", manager=m)
