# sdk_npnpu/__init__.py
from sdk_core.framework import FrameworkHooks

plugin = FrameworkHooks("npnpu", "sdk_npnpu._runtime", {"numpy": ("cpu", "fakenpu")})
