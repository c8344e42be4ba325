"""The module paths of sdk-core 0.1 that 0.2 moved, kept working until 0.3.

0.2 split the core into layers (``sdk_core.model``, ``sdk_core.plugins``, ``sdk_core.runtime``,
...). Each 0.1 module path (``sdk_core.spec``, ``sdk_core.framework``, ...) is still a module:
a file of three lines whose names are looked up here on first use. Using one emits a
``DeprecationWarning`` naming the replacement, once per place in the caller's code (Python's
default warning filter), and returns the very object of the new home.

Nothing here imports the new homes until a name is used, so ``from sdk_core.framework import
FrameworkHooks`` in a plugin's entry point stays as light as the new spelling.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

SINCE, REMOVED_IN = "0.2", "0.3"

_SPEC = "sdk_core.model.spec"
_RESULTS, _MEASURE, _STATS = "sdk_core.bench.results", "sdk_core.bench.measure", "sdk_core.bench.stats"

# 0.1 module -> {public name in 0.1 -> module that defines it now}
MOVED: dict[str, dict[str, str]] = {
    "sdk_core.framework": {"FrameworkHooks": "sdk_core.plugins.framework"},
    "sdk_core.hookspecs": {
        name: "sdk_core.plugins.hookspecs"
        for name in (
            "hookspec",
            "sdk_framework_info",
            "sdk_probe_devices",
            "sdk_build_model",
            "sdk_make_train_step",
            "sdk_make_predict",
            "sdk_get_weights",
            "sdk_set_weights",
            "sdk_read_memory",
            "sdk_reset_peak_memory",
            "sdk_read_power",
            "sdk_add_commands",
        )
    },
    "sdk_core.markers": {"hookimpl": "sdk_core.plugins.markers"},
    "sdk_core.info": {
        "DTYPES": "sdk_core.plugins.requests",
        "DeviceInfo": "sdk_core.plugins.records",
        "FrameworkInfo": "sdk_core.plugins.records",
        "MemoryReading": "sdk_core.plugins.records",
        "PowerReading": "sdk_core.plugins.records",
        "BuildRequest": "sdk_core.plugins.requests",
        "StepRequest": "sdk_core.plugins.requests",
        "PredictRequest": "sdk_core.plugins.requests",
        "WeightsRequest": "sdk_core.plugins.requests",
    },
    "sdk_core.manager": {
        "API_VERSION": "sdk_core.version",
        "GROUP": "sdk_core.plugins.manager",
        "PluginStatus": "sdk_core.plugins.manager",
        "PluginManager": "sdk_core.plugins.manager",
        "get_manager": "sdk_core.plugins.manager",
        "configure": "sdk_core.plugins.manager",
    },
    "sdk_core.cpu": {
        name: "sdk_core.plugins.cpu"
        for name in (
            "SDK_CORE_API",
            "SIMD_FLAGS",
            "RAPL",
            "sdk_probe_devices",
            "sdk_read_memory",
            "sdk_reset_peak_memory",
            "sdk_read_power",
        )
    },
    "sdk_core.spec": {
        name: _SPEC
        for name in (
            "Shape",
            "INPUT_DTYPES",
            "Param",
            "Layer",
            "Dense",
            "Conv2D",
            "MaxPool2D",
            "AvgPool2D",
            "Flatten",
            "ReLU",
            "GELU",
            "Tanh",
            "Sigmoid",
            "Softmax",
            "Dropout",
            "BatchNorm",
            "LayerNorm",
            "Embedding",
            "Attention",
            "TransformerBlock",
            "LAYER_TYPES",
            "layer_from_dict",
            "ModelSpec",
        )
    },
    "sdk_core.optim": {
        name: "sdk_core.model.optim"
        for name in ("OPTIMIZERS", "SCHEDULES", "LOSSES", "DEFAULT_EPS", "Schedule", "Optimizer", "check_loss")
    },
    "sdk_core.data": {name: "sdk_core.model.data" for name in ("Split", "digits", "counting_text")},
    "sdk_core.weights": {
        "FORMAT": "sdk_core.model.weights",
        "atomic_write": "sdk_core.model.files",
        "save_weights": "sdk_core.model.weights",
        "load_weights": "sdk_core.model.weights",
        "read_metadata": "sdk_core.model.weights",
    },
    "sdk_core.metrics": {name: "sdk_core.model.metrics" for name in ("check_targets", "loss_value", "accuracy")},
    "sdk_core.estimate": {
        name: "sdk_core.model.estimate"
        for name in ("TRAINING_FACTOR", "forward_flops", "training_flops", "training_bytes")
    },
    "sdk_core.stack": {
        "History": "sdk_core.runtime.training",
        "usable_stacks": "sdk_core.runtime.select",
        "Stack": "sdk_core.runtime.stack",
        "load_spec": "sdk_core.runtime.stack",
    },
    "sdk_core.select": {
        "POLICIES": "sdk_core.runtime.select",
        "Pair": "sdk_core.runtime.select",
        "usable_stacks": "sdk_core.runtime.select",
        "choose": "sdk_core.runtime.select",
    },
    "sdk_core.progress": {"Progress": "sdk_core.runtime.console"},
    "sdk_core.plot": {"require_matplotlib": "sdk_core.runtime.console", "plot_report": "sdk_core.bench.plot"},
    "sdk_core.bench_results": {
        name: _RESULTS
        for name in (
            "RECOMMEND_SHARE",
            "NOISY",
            "UNAVAILABLE",
            "Memory",
            "Energy",
            "Phase",
            "BatchResult",
            "StackResult",
            "BenchReport",
            "recommend",
            "TRAIN_COLUMNS",
            "INFER_COLUMNS",
            "format_report",
        )
    },
    "sdk_core.bench_run": {
        "BATCH_SIZES": _MEASURE,
        "OOM_MARKERS": "sdk_core.errors",
        "is_out_of_memory": "sdk_core.errors",
        "make_batch": "sdk_core.model.data",
        "check_settings": _MEASURE,
        "select_stacks": _MEASURE,
        "run": _MEASURE,
    },
    "sdk_core.bench_stats": {name: _STATS for name in ("percentile", "Summary", "Latency")},
    # names that stayed in a module of 0.2.0 but moved or were renamed after it ("module:new name")
    "sdk_core.bench": {"add_command": "sdk_core.cli.bench:add_commands", "cmd_bench": "sdk_core.cli.bench:bench"},
    "sdk_core.bench.measure": {"OOM_MARKERS": "sdk_core.errors"},
    "sdk_core.plugins.records": {
        name: "sdk_core.plugins.requests"
        for name in ("BuildRequest", "StepRequest", "PredictRequest", "WeightsRequest")
    },
}
# moved after 0.2.0: deprecated in 0.3, removed in 0.4 at the earliest
LATER = {"sdk_core.plugins.records": ("0.3", "0.4"), "sdk_core.bench.measure": ("0.3", "0.4")}
# the 0.1 modules that are deprecated as a whole (the others above still exist, less the names)
MODULES = tuple(m for m in MOVED if m not in ("sdk_core.bench", "sdk_core.bench.measure", "sdk_core.plugins.records"))


def replacement(module: str, name: str) -> str:
    """Where ``module.name`` of 0.1 lives now, as the user should spell it: ``sdk_core.X``
    where the top-level package exports it, else its module."""
    exported = sys.modules["sdk_core"].__all__  # loaded: this module is part of it (no import: the layers)
    home, _, new_name = MOVED[module][name].partition(":")
    if name in exported and not new_name:
        return f"sdk_core.{name}"
    return f"{home}.{new_name or name}"


def warn(old: str, new: str, stacklevel: int = 3, since: str = SINCE, removed_in: str = REMOVED_IN) -> None:
    """One ``DeprecationWarning``: ``old`` works until ``removed_in``, ``new`` is what to write."""
    warnings.warn(
        f"{old} is deprecated since sdk-core {since} and will be removed in {removed_in}: use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def resolve(module: str, name: str) -> Any:
    """The object that ``module.name`` of an earlier release is now."""
    home, _, new_name = MOVED[module][name].partition(":")
    return getattr(importlib.import_module(home), new_name or name)


def module_getattr(module: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the 0.1 module ``module``: each name resolves to
    its new home with a warning naming it."""
    names = MOVED[module]

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module '{module}' has no attribute '{name}'")
        # stacklevel 3: past warn() and this function, to the line that used the name
        # (Python skips the import machinery's own frames for `from ... import`)
        since, removed_in = LATER.get(module, (SINCE, REMOVED_IN))
        warn(f"'{module}.{name}'", f"'{replacement(module, name)}'", since=since, removed_in=removed_in)
        return resolve(module, name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
