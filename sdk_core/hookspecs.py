"""Deprecated since sdk-core 0.2, removed in 0.3: the 0.1 path of
``sdk_core.plugins.hookspecs``. The hooks are plain attributes here (pluggy's
``add_hookspecs`` reads a module's attributes statically), so the warning is given on import."""

from ._deprecated import warn
from .plugins import hookspecs as _hookspecs

warn("'sdk_core.hookspecs'", "'sdk_core.plugins.hookspecs'")
globals().update({name: getattr(_hookspecs, name) for name in dir(_hookspecs) if name.startswith(("sdk_", "hook"))})
