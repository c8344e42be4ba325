"""sdk_core: one API to probe hardware, build, train and run models on any installed
framework and accelerator. Frameworks and accelerators are plugins (entry-point group
``sdk_core``); importing this package loads none of them.

Plugins import this package for the hook marker, the records and ``FrameworkHooks``, so only
those load eagerly; the model, training and file APIs load on first use (``sdk devices``
stays quick). The layers inside, from the bottom: ``model`` (framework-neutral), ``plugins``
(hooks and discovery), ``runtime`` (``Stack``), features (``bench``, ``testing``), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DeviceOutOfMemory, NotAvailableError, PluginError, SdkError, SdkWarning, SpecError, WeightsError
from .plugins.framework import FrameworkHooks
from .plugins.manager import PluginManager, PluginStatus, configure, get_manager
from .plugins.markers import hookimpl
from .plugins.records import DeviceInfo, FrameworkInfo, MemoryReading, PowerReading
from .version import API_VERSION, __version__

if TYPE_CHECKING:  # the lazily loaded names, for type checkers and IDEs
    from . import compress, distributed, export, tune
    from .model import zoo
    from .model.data import counting_text, digits
    from .model.onnx_import import import_onnx
    from .model.optim import LOSSES, OPTIMIZERS, Optimizer, OptimizerState, Schedule
    from .model.spec import (
        GELU,
        LAYER_TYPES,
        Add,
        Attention,
        AvgPool2D,
        BatchNorm,
        Concat,
        Constant,
        Conv2D,
        Dense,
        Dropout,
        Embedding,
        Flatten,
        GlobalAvgPool,
        Layer,
        LayerNorm,
        MaxPool2D,
        ModelSpec,
        Node,
        Op,
        Param,
        ReLU,
        Sigmoid,
        Softmax,
        Tanh,
        TransformerBlock,
        Weight,
    )
    from .model.weights import load_weights, save_weights
    from .plugins.requests import (
        BuildRequest,
        DecodeRequest,
        OptimizerStateRequest,
        PredictRequest,
        QuantizeRequest,
        StepRequest,
        WeightsRequest,
    )
    from .runtime.select import usable_stacks
    from .runtime.stack import History, Stack, load_spec
    from .runtime.world import DataParallel, Sharded

_LAZY = {
    "model.data": ("counting_text", "digits"),
    "model.optim": ("LOSSES", "OPTIMIZERS", "Optimizer", "OptimizerState", "Schedule"),
    "model.spec": (
        "LAYER_TYPES",
        "Add",
        "AvgPool2D",
        "Attention",
        "BatchNorm",
        "Concat",
        "Conv2D",
        "Dense",
        "Dropout",
        "Embedding",
        "Flatten",
        "GELU",
        "GlobalAvgPool",
        "Layer",
        "LayerNorm",
        "MaxPool2D",
        "ModelSpec",
        "Node",
        "Op",
        "Param",
        "ReLU",
        "Sigmoid",
        "Softmax",
        "Tanh",
        "TransformerBlock",
        "Constant",
        "Weight",
    ),
    "runtime.stack": ("History", "Stack", "load_spec"),
    "runtime.world": ("DataParallel", "Sharded"),
    "model.onnx_import": ("import_onnx",),
    "runtime.select": ("usable_stacks",),
    "model.weights": ("load_weights", "save_weights"),
    "plugins.requests": (
        "BuildRequest",
        "DecodeRequest",
        "OptimizerStateRequest",
        "PredictRequest",
        "QuantizeRequest",
        "StepRequest",
        "WeightsRequest",
    ),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "zoo":
        return importlib.import_module(".model.zoo", __name__)
    if name in ("compress", "distributed", "export", "tune"):
        return importlib.import_module(f".{name}", __name__)
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sdk_core' has no attribute '{name}'")


__all__ = [
    "API_VERSION",
    "GELU",
    "LAYER_TYPES",
    "LOSSES",
    "OPTIMIZERS",
    "Add",
    "Attention",
    "AvgPool2D",
    "BatchNorm",
    "BuildRequest",
    "Concat",
    "Constant",
    "Conv2D",
    "DataParallel",
    "DecodeRequest",
    "Dense",
    "DeviceInfo",
    "DeviceOutOfMemory",
    "Dropout",
    "Embedding",
    "Flatten",
    "FrameworkHooks",
    "FrameworkInfo",
    "GlobalAvgPool",
    "History",
    "Layer",
    "LayerNorm",
    "MaxPool2D",
    "MemoryReading",
    "ModelSpec",
    "Node",
    "NotAvailableError",
    "Op",
    "Optimizer",
    "OptimizerState",
    "OptimizerStateRequest",
    "Param",
    "PluginError",
    "PluginManager",
    "PluginStatus",
    "PowerReading",
    "PredictRequest",
    "QuantizeRequest",
    "ReLU",
    "Schedule",
    "SdkError",
    "SdkWarning",
    "Sharded",
    "Sigmoid",
    "Softmax",
    "SpecError",
    "Stack",
    "StepRequest",
    "Tanh",
    "TransformerBlock",
    "Weight",
    "WeightsError",
    "WeightsRequest",
    "__version__",
    "compress",
    "configure",
    "counting_text",
    "digits",
    "distributed",
    "export",
    "get_manager",
    "hookimpl",
    "import_onnx",
    "load_spec",
    "load_weights",
    "save_weights",
    "tune",
    "usable_stacks",
    "zoo",
]
