"""``import sdk_core.zoo`` (the 0.1 spelling) gives :mod:`sdk_core.model.zoo` itself, the same
module as the public ``sdk_core.zoo`` attribute: the zoo never moved for users, so no warning."""

import importlib
import sys

from .model.zoo import ZOO, get, gpt, lenet5, mlp

__all__ = ["ZOO", "get", "gpt", "lenet5", "mlp"]

sys.modules[__name__] = importlib.import_module("sdk_core.model.zoo")
