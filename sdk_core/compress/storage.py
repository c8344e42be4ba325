"""Saving a compressed model (``.sdkz``) with a per-layer size report, and loading it back."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import SdkError
from ..model import sdkz
from ..model.weights import check_finite
from ..plugins.manager import PluginManager
from ..runtime.stack import Stack
from .quantize import Quantized
from .sharing import Codebook


def dense_bytes(stack: Stack) -> int:
    """The size of the model as a float32 safetensors file (what ``Stack.save`` writes)."""
    from safetensors.numpy import save

    spec = stack._need_model()
    weights = {n: np.ascontiguousarray(w, np.float32) for n, w in stack.get_weights().items()}
    meta = {
        "format": "sdk_core/1",
        "spec": spec.to_json(),
        "framework": stack.framework.name,
        "device": stack.device.id,
    }
    return len(save(weights, metadata=meta))


def _encoded(
    name: str, value: np.ndarray, mask: np.ndarray | None, book: Codebook | None, quantized: Quantized | None
) -> tuple[sdkz.Encoded, int]:
    """The tensor as the file stores it, and its bits per stored value."""
    positions = None if mask is None else np.flatnonzero(mask.ravel())
    take = (lambda a: a.ravel()) if positions is None else (lambda a: a.ravel()[positions])
    if book is not None:
        return sdkz.Encoded(
            value.shape, "codebook", positions, codebook=book.centroids, symbols=take(book.indices), bits=book.bits
        ), book.bits
    if quantized is not None and name in quantized.codes:
        codes = take(quantized.codes[name]).astype(np.int64) + 128
        return sdkz.Encoded(
            value.shape, "int8", positions, scales=quantized.scales[name], axis=quantized.axes[name], symbols=codes
        ), 8
    return sdkz.Encoded(value.shape, "float32", positions, values=take(value).astype(np.float32)), 32


def save_compressed(
    stack: Stack,
    path: str | os.PathLike[str],
    codebooks: Mapping[str, Codebook] | None = None,
    quantized: Quantized | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``stack``'s model as a ``.sdkz`` file, atomically: its masks (``stack.masks``) as
    sparse positions, its ``codebooks`` (from :func:`share_weights`) or int8 codes (from
    :func:`quantize`), the other tensors as float32. Returns the size report: a row per
    tensor in ``layers`` (``name``, ``layer``, ``params``, ``nonzeros``, ``bits``, ``bytes``), ``bytes``,
    ``dense_bytes`` (the float32 safetensors size) and ``coders`` (what the streams would
    take packed, Huffman-coded and zstd-coded; the file uses the smallest of each)."""
    spec = stack._need_model()
    if codebooks and quantized is not None:
        raise SdkError("a tensor is either weight-shared or int8-quantized: pass codebooks or quantized, not both")
    weights = stack.get_weights()
    check_finite(weights, f"refusing to save '{path}'")
    masks, books = stack.masks or {}, dict(codebooks or {})
    tensors, bits = {}, {}
    for name, value in weights.items():
        tensors[name], bits[name] = _encoded(name, value, masks.get(name), books.get(name), quantized)
    meta = {"framework": stack.framework.name, **(metadata or {})}
    written = sdkz.write(path, spec.to_json(), tensors, meta)
    rows = []
    for name, value in weights.items():
        rows.append(
            {
                "name": name,
                "layer": spec.layers[spec.node_of(name)].type,
                "params": int(value.size),
                "nonzeros": int(np.count_nonzero(masks[name])) if name in masks else int(value.size),
                "bits": bits[name],
                "bytes": written["tensors"][name],
            }
        )
    total = os.path.getsize(path)
    return {
        "layers": rows,
        "bytes": total,
        "header_bytes": written["header_bytes"],
        "dense_bytes": dense_bytes(stack),
        "coders": written["coders"],
    }


def load(
    path: str | os.PathLike[str], framework: str = "numpy", device: str = "cpu", manager: PluginManager | None = None
) -> Stack:
    """A stack on ``framework``/``device`` holding a ``.sdkz`` (or safetensors) model's
    canonical float weights; a compressed file's masks are set (where the framework supports
    masks), so fine-tuning keeps them."""
    stack = Stack(framework, device, manager=manager)
    if not sdkz.is_sdkz(path):
        return stack.load(os.fspath(path))
    masks: dict[str, np.ndarray] = {}

    def read() -> dict[str, np.ndarray]:  # the file is decoded once, for weights and masks
        weights, found, _ = sdkz.read(path)
        masks.update(found)
        return weights

    stack._load(os.fspath(path), read)
    if masks and "training:masks" not in stack.framework.unsupported:
        stack.set_masks(masks)
    return stack
