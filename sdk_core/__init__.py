"""sdk_core: one API to probe hardware, build, train and run models on any installed
framework and accelerator. Frameworks and accelerators are plugins (entry-point group
``sdk_core``); importing this package loads none of them."""
from .data import counting_text, digits
from .errors import NotAvailableError, PluginError, SdkError, SpecError, WeightsError
from .info import (BuildRequest, DeviceInfo, FrameworkInfo, MemoryReading, PowerReading,
                   PredictRequest, StepRequest, WeightsRequest)
from .manager import API_VERSION, PluginManager, PluginStatus, configure, get_manager
from .markers import hookimpl
from .optim import LOSSES, OPTIMIZERS, Optimizer, Schedule
from .spec import (LAYER_TYPES, AvgPool2D, Attention, BatchNorm, Conv2D, Dense, Dropout,
                   Embedding, Flatten, GELU, Layer, LayerNorm, MaxPool2D, ModelSpec, Param,
                   ReLU, Sigmoid, Softmax, Tanh, TransformerBlock)
from .stack import History, Stack, load_spec, usable_stacks
from .weights import load_weights, save_weights
from . import zoo

__version__ = "0.1.0"

__all__ = [
    "API_VERSION", "Attention", "AvgPool2D", "BatchNorm", "BuildRequest", "Conv2D", "Dense",
    "DeviceInfo", "Dropout", "Embedding", "Flatten", "FrameworkInfo", "GELU", "History",
    "LAYER_TYPES", "LOSSES", "Layer", "LayerNorm", "MaxPool2D", "MemoryReading", "ModelSpec",
    "NotAvailableError", "OPTIMIZERS", "Optimizer", "Param", "PluginError", "PluginManager",
    "PluginStatus", "PowerReading", "PredictRequest", "ReLU", "Schedule", "SdkError",
    "Sigmoid", "Softmax", "SpecError", "Stack", "StepRequest", "Tanh", "TransformerBlock",
    "WeightsError", "WeightsRequest", "configure", "counting_text", "digits", "get_manager",
    "hookimpl", "load_spec", "load_weights", "save_weights", "usable_stacks", "zoo",
]
