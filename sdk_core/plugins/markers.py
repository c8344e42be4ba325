"""The marker plugins put on their hook implementations: ``@sdk_core.hookimpl``."""

import pluggy

hookimpl = pluggy.HookimplMarker("sdk_core")
