"""Weights files: safetensors (never pickle), written atomically.

A file holds the canonical weights (name -> array) and string metadata: the file format,
the model spec as JSON and the framework that wrote it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import WeightsError

FORMAT = "sdk_core/1"


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a crash or an error
    leaves the previous file intact."""
    path = Path(path)
    if not path.parent.is_dir():
        raise WeightsError(f"cannot write '{path}': directory '{path.parent}' does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(
    path: str | os.PathLike[str], weights: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Save ``weights`` as a safetensors file at ``path``, atomically."""
    from safetensors.numpy import save

    meta = {"format": FORMAT, **(metadata or {})}
    tensors = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    atomic_write(path, save(tensors, metadata=meta))


def _read(path: str | os.PathLike[str], tensors: bool) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            names = list(f.keys()) if tensors else []  # safe_open is no dict: keys() is its API
            weights = {k: f.get_tensor(k) for k in names}
    except Exception as exc:  # SafetensorError and friends: the file is not what it claims
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"'{path}' is not a valid safetensors file: {reason}") from None
    return weights, metadata


def load_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(weights, metadata)``. Runs no code from the file."""
    return _read(path, tensors=True)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """A safetensors file's string metadata, from its header alone."""
    return _read(path, tensors=False)[1]
