"""Weights files: safetensors (never pickle), written atomically.

A file holds the canonical weights (name -> array) and string metadata: the file format,
the model spec as JSON and the framework that wrote it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import WeightsError
from . import sdkz
from .files import FileError, atomic_write, check_input

FORMAT = "sdk_core/1"


NONFINITE_HINT = "; pass allow_nonfinite=True (--allow-nonfinite) to load it anyway"


def check_finite(weights: Mapping[str, Any], what: str, hint: str = "") -> None:
    """Raise :class:`WeightsError` naming the first tensor of ``weights`` that holds NaN or
    infinity and how many of its values do: ``"{what}: tensor 'x' holds NaN or infinity
    (12 of 12 values){hint}"``. Saving, loading and setting weights all check with this."""
    for name, value in weights.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc":
            bad = value.size - int(np.count_nonzero(np.isfinite(value)))
            if bad:
                count = f"{bad} of {value.size} values"
                raise WeightsError(f"{what}: tensor '{name}' holds NaN or infinity ({count}){hint}")


def save_weights(
    path: str | os.PathLike[str], weights: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Save ``weights`` as a safetensors file at ``path``, atomically. Non-finite weights are
    never written: the previous file stays."""
    from safetensors.numpy import save

    meta = {"format": FORMAT, **(metadata or {})}
    tensors = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    check_finite(tensors, f"refusing to save '{path}'")
    try:
        atomic_write(path, save(tensors, metadata=meta))
    except FileError as exc:
        raise WeightsError(str(exc)) from None


def _open(path: str | os.PathLike[str], tensors: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """``(tensors or their shapes, metadata)``; no code from the file runs."""
    from safetensors import safe_open

    try:
        checked = check_input(path, "weights")
    except FileError as exc:
        raise WeightsError(str(exc)) from None
    try:
        with safe_open(str(checked), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            names = list(f.keys())  # safe_open is no dict: keys() is its API
            if tensors:
                return {k: f.get_tensor(k) for k in names}, metadata
            return {k: tuple(f.get_slice(k).get_shape()) for k in names}, metadata
    except Exception as exc:  # SafetensorError and friends: the file is not what it claims
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"'{checked}' is not a valid safetensors file: {reason}") from None


def load_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file, or a compressed ``.sdkz`` file (:mod:`sdk_core.model.sdkz`, read back as
    canonical float weights): ``(weights, metadata)``. Runs no code from the file."""
    if sdkz.is_sdkz(path):
        weights, _, metadata = sdkz.read(path)
        return weights, metadata
    return _open(path, tensors=True)


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """A safetensors file's tensor shapes and string metadata, from its header alone: nothing
    of the size the header claims is allocated. A ``.sdkz`` file's header likewise."""
    if sdkz.is_sdkz(path):
        return sdkz.read_header(path)
    return _open(path, tensors=False)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """A safetensors file's string metadata, from its header alone."""
    return read_header(path)[1]
