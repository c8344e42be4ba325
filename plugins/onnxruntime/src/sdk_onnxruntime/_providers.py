"""Which ONNX Runtime execution providers a device gets, with no silent fallback.

A device kind asks for providers, best first: the cpu for ``CPUExecutionProvider``, a CUDA
device for ``CUDAExecutionProvider`` (``SDK_ONNXRUNTIME_PROVIDERS`` names others, such as
``TensorrtExecutionProvider,CUDAExecutionProvider``). A requested provider that onnxruntime
does not offer, or that does not load when the session starts, is an error with ``strict``
and a warning without it; ``CPUExecutionProvider`` always follows the requested ones, as
ONNX Runtime expects, for the operators the others do not run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

from sdk_core import NotAvailableError, SdkWarning

CPU = "CPUExecutionProvider"
BACKENDS = {"cpu": (CPU,), "cuda": ("CUDAExecutionProvider", "TensorrtExecutionProvider")}
DEFAULT = {"cpu": (CPU,), "cuda": ("CUDAExecutionProvider",)}
ENV = "SDK_ONNXRUNTIME_PROVIDERS"


def requested(kind: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, ...]:
    """The providers asked for on a device of ``kind``: ``SDK_ONNXRUNTIME_PROVIDERS`` if set
    (comma-separated), else the default for the kind."""
    text = environ.get(ENV, "").strip()
    if text:
        return tuple(p.strip() for p in text.split(",") if p.strip())
    if kind not in DEFAULT:
        raise NotAvailableError(f"onnxruntime has no execution provider for device kind '{kind}'")
    return DEFAULT[kind]


def _missing(what: str, missing: Sequence[str], have: Sequence[str], instead: Sequence[str], strict: bool) -> None:
    message = (
        f"onnxruntime {what} {', '.join(missing)} (it has: {', '.join(have) or 'none'}); "
        "install onnxruntime-gpu for CUDA and TensorRT"
    )
    if strict:
        raise NotAvailableError(f"strict: {message}")
    warnings.warn(f"{message}: running on {', '.join(instead)} instead", SdkWarning, stacklevel=3)


def choose(wanted: Sequence[str], available: Sequence[str], strict: bool) -> list[str]:
    """The provider list for a session: the wanted ones onnxruntime offers, then the cpu.
    A wanted provider it does not offer fails with ``strict`` and warns without."""
    chosen = [p for p in wanted if p in available]
    chosen += [CPU] if CPU not in chosen else []
    missing = [p for p in wanted if p not in available]
    if missing:
        _missing("does not offer", missing, available, chosen, strict)
    return chosen


def check_active(wanted: Sequence[str], active: Sequence[str], strict: bool) -> None:
    """After the session started: a wanted provider it did not load (a missing CUDA or
    TensorRT library) fails with ``strict`` and warns without."""
    dropped = [p for p in wanted if p not in active]
    if dropped:
        _missing("could not load", dropped, active, active, strict)
