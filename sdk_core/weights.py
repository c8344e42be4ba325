"""Deprecated since sdk-core 0.2, removed in 0.3: the 0.1 path of what is now in
``sdk_core.model.files``, ``sdk_core.model.weights``."""

from ._deprecated import module_getattr

__getattr__, __dir__ = module_getattr(__name__)
