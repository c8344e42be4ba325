"""sdk_core: one API to probe hardware, build, train and run models on any installed
framework and accelerator. Frameworks and accelerators are plugins (entry-point group
``sdk_core``); importing this package loads none of them.

Plugins import this package for the hook marker and the data classes, so only those load
eagerly; the model, training and file APIs load on first use (``sdk devices`` stays quick).
"""
import importlib
from typing import Any

from .errors import NotAvailableError, PluginError, SdkError, SpecError, WeightsError
from .info import (BuildRequest, DeviceInfo, FrameworkInfo, MemoryReading, PowerReading,
                   PredictRequest, StepRequest, WeightsRequest)
from .manager import API_VERSION, PluginManager, PluginStatus, configure, get_manager
from .markers import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "data": ("counting_text", "digits"),
    "optim": ("LOSSES", "OPTIMIZERS", "Optimizer", "Schedule"),
    "spec": ("LAYER_TYPES", "AvgPool2D", "Attention", "BatchNorm", "Conv2D", "Dense", "Dropout",
             "Embedding", "Flatten", "GELU", "Layer", "LayerNorm", "MaxPool2D", "ModelSpec", "Param",
             "ReLU", "Sigmoid", "Softmax", "Tanh", "TransformerBlock"),
    "stack": ("History", "Stack", "load_spec", "usable_stacks"),
    "weights": ("load_weights", "save_weights"),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "zoo":
        return importlib.import_module(".zoo", __name__)
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sdk_core' has no attribute '{name}'")


__all__ = sorted([
    "API_VERSION", "BuildRequest", "DeviceInfo", "FrameworkInfo", "MemoryReading", "NotAvailableError",
    "PluginError", "PluginManager", "PluginStatus", "PowerReading", "PredictRequest", "SdkError",
    "SpecError", "StepRequest", "WeightsError", "WeightsRequest", "configure", "get_manager",
    "hookimpl", "zoo", *_HOME])
