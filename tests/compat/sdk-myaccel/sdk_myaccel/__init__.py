# sdk_myaccel/__init__.py -- import nothing heavy here: discovery must stay fast and light
from sdk_core import DeviceInfo, hookimpl

SDK_CORE_API = 1  # the core API this plugin was written for; others are refused


@hookimpl
def sdk_probe_devices():
    return [DeviceInfo(kind="myaccel", index=0, vendor="Me", name="Accel 1", memory_total=2**34)]
