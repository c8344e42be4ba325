"""Errors raised by sdk_core. Every message is one line that names what was wrong."""

from __future__ import annotations

import re

MAX_MESSAGE = 300
"""The longest error message, in characters: an echoed value never floods a terminal or a log."""
OOM_MARKERS = (  # every framework's allocation failure, by type name or message
    "out of memory",  # JAX / XLA, CUDA
    "outofmemory",  # torch.OutOfMemoryError
    "resource_exhausted",  # JAX's JaxRuntimeError
    "resourceexhausted",  # TensorFlow's ResourceExhaustedError
    "resource exhausted",
    "oom when allocating",  # TensorFlow
    "can't allocate memory",  # torch on the cpu: "DefaultCPUAllocator: can't allocate memory"
    "allocate memory failed",  # MindSpore
    "malloc memory failed",  # MindSpore's memory pool
)
_DTYPE_BYTES = {"float": 4, "double": 8, "half": 2, "bfloat16": 2, "int32": 4, "int64": 8, "int8": 1, "uint8": 1}


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (newlines and runs of spaces become one space), at most ``limit``
    characters: an echoed value can never flood a terminal or a log."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class SdkError(Exception):
    """Base class: bad input or a failed operation, with a one-line message of at most
    :data:`MAX_MESSAGE` characters."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


class SpecError(SdkError, ValueError):
    """A ModelSpec, layer, optimizer or loss description is invalid."""


class PluginError(SdkError):
    """A plugin failed: on import, in a hook, or by returning the wrong type."""

    def __init__(self, plugin: str, where: str, reason: str) -> None:
        self.plugin = plugin
        self.where = where
        self.reason = reason
        super().__init__(f"plugin '{plugin}' failed in {where}: {reason}")


class NotAvailableError(SdkError):
    """A framework, device or feature was asked for that no installed plugin provides."""


class WeightsError(SdkError):
    """A weights file is missing, corrupt, or does not match the model."""


class DeviceOutOfMemory(SdkError, MemoryError):
    """The device ran out of memory: whatever the framework's own error (``MemoryError``,
    ``torch.cuda.OutOfMemoryError``, XLA's ``RESOURCE_EXHAUSTED``, TensorFlow's
    ``ResourceExhaustedError``), it reaches the user as this, naming the device, what was
    running and, where the framework said, how much was asked for (``requested``). The
    framework's error is its ``__cause__``."""

    def __init__(self, device: str, doing: str, requested: str | None = None, detail: str = "") -> None:
        self.device, self.doing, self.requested = device, doing, requested
        asked = f" (it asked for {requested} more)" if requested else ""
        super().__init__(
            f"out of memory on {device} while {doing}{asked}: lower the batch size or the model size"
            + (f" [{detail}]" if detail else "")
        )


def is_out_of_memory(exc: BaseException | None) -> bool:
    """True for ``MemoryError`` and for framework errors that say they ran out of memory (by
    type name or message, following ``__cause__``: the core imports no framework)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, MemoryError):
            return True
        names = " ".join(t.__name__.lower() for t in type(exc).__mro__)
        text = f"{names} {exc}".lower()
        if any(marker in text for marker in OOM_MARKERS):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


_ASKED = (
    r"(?:tried to allocate|trying to allocate|when allocating|allocating|unable to allocate)"
    r"\s+([\d.,]+\s*[kmgt]?i?b(?:ytes)?)"
)
_TENSOR = r"tensor with shape\s*\[([\d,\s]*)\] and type (\w+)"


def requested_memory(exc: BaseException) -> str | None:
    """How much an out-of-memory error says was asked for ("Tried to allocate 2.00 GiB",
    "allocating 1024 bytes", NumPy's "Unable to allocate 2.38 GiB", TensorFlow's "tensor with
    shape[64,1000] and type float"), if it says."""
    found = re.search(_ASKED, str(exc), re.I)
    if found:
        return re.sub(r"\.(?=\s)", "", found[1])  # NumPy writes "610. MiB"
    tensor = re.search(_TENSOR, str(exc))
    if tensor and tensor[2] in _DTYPE_BYTES:
        dims = [int(d) for d in tensor[1].split(",") if d.strip()]
        count = 1
        for d in dims:
            count *= d
        return f"{count * _DTYPE_BYTES[tensor[2]]} bytes"
    return None


class SdkWarning(UserWarning):
    """Something works, but not as the user probably meant: a block entry that matches no
    plugin, a hook function without ``@hookimpl``."""
