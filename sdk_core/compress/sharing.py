"""Trained weight sharing (Deep Compression, section 3): per weight, k-means over its unpruned
entries with linear initialisation and 2**bits centroids; optionally the centroids are
fine-tuned with the gradient summed per cluster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError
from ..model import metrics
from ..model.optim import Optimizer
from ..runtime.stack import Stack
from .pruning import _matches, prunable

DEFAULT_BITS = {"conv2d": 8, "dense": 5}
KMEANS_ITERATIONS = 30


@attrs.frozen
class Codebook:
    """A shared weight: ``centroids[indices]`` at the unpruned entries (``indices`` has the
    weight's shape; pruned entries hold 0 and are masked out). ``bits`` is what an index takes:
    the bit width asked for, or fewer when there are fewer distinct values."""

    centroids: np.ndarray
    indices: np.ndarray
    bits: int

    def weights(self, mask: np.ndarray | None) -> np.ndarray:
        values = self.centroids[self.indices]
        return values if mask is None else values * mask


def check_bits(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
        raise SdkError(f"{what} must be an int from 1 to 16 (got {value!r})")
    return value


def parse_bits(text: str) -> dict[str, int]:
    """``conv=8,dense=5`` or ``6`` (every layer type) as a mapping."""
    out: dict[str, int] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            key, value = "*", key
        try:
            bits = int(value)
        except ValueError:
            raise SdkError(f"share bits read conv=8,dense=5 or one number (got {text!r})") from None
        out["conv2d" if key.strip() == "conv" else key.strip()] = check_bits(bits, f"share bits for '{key.strip()}'")
    return out


def kmeans(values: np.ndarray, k: int, iterations: int = KMEANS_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means with linear initialisation (``k`` centroids evenly from min to max):
    ``(centroids, index of each value)``. Empty clusters keep their centroid."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return np.zeros(1, np.float32), np.zeros(0, np.int64)
    k = max(1, min(k, len(np.unique(values))))
    centroids = np.linspace(values.min(), values.max(), k)
    for _ in range(iterations):
        order = np.argsort(centroids)
        centroids = centroids[order]
        index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
        counts = np.bincount(index, minlength=k)
        sums = np.bincount(index, weights=values, minlength=k)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids, rtol=0, atol=1e-9):
            break
        centroids = moved
    index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
    return centroids.astype(np.float32), index


def bits_for(stack: Stack, bits: int | Mapping[str, int] | None) -> dict[str, int]:
    """The bit width of every trainable tensor (biases and norms included): ``bits`` by
    weight name, layer index or type."""
    names = prunable(stack, min_axes=1)
    if isinstance(bits, int):
        bits = {"*": bits}
    for key, value in (bits or {}).items():
        check_bits(value, f"share bits for '{key}'")
        if key != "*" and not any(_matches(n, k, key) for n, k in names.items()):
            raise SdkError(f"'{key}' names no weight, layer or layer type that can be shared")
    bits = {**DEFAULT_BITS, **(bits or {})}
    out = {}
    for name, kind in names.items():
        chosen = [b for key, b in bits.items() if _matches(name, kind, key)]
        out[name] = chosen[-1] if chosen else bits.get("*", DEFAULT_BITS.get(kind, 8))
    return out


def share_weights(
    stack: Stack,
    bits: int | Mapping[str, int] | None = None,
    x: Any = None,
    y: Any = None,
    finetune_epochs: int = 0,
    lr: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Codebook]:
    """Share the weights of ``stack`` now: each trainable tensor becomes ``2**bits`` float16
    centroids (``bits`` per layer type, index or weight, default conv 8, dense 5, 8 for other
    layers) over its unpruned entries. With ``finetune_epochs`` and data, the centroids are then trained: after each
    plain-SGD step of rate ``lr`` every centroid moves by the update summed over its cluster
    (the sum of the gradients, times ``lr``), and the weights are reset to the centroids."""
    chosen = bits_for(stack, bits)
    weights = stack.get_weights()
    masks = stack.masks or {}
    books = {}
    for name, b in chosen.items():
        mask = masks.get(name)
        kept = weights[name][mask != 0] if mask is not None else weights[name].ravel()
        centroids, index = kmeans(kept, 1 << b)
        centroids = centroids.astype(np.float16).astype(np.float32)  # stored as float16
        indices = np.zeros(weights[name].shape, np.int64)
        if mask is not None:
            indices[mask != 0] = index
        else:
            indices = index.reshape(weights[name].shape)
        books[name] = Codebook(centroids, indices, min(b, max(1, int(np.ceil(np.log2(len(centroids)))))))
    _apply(stack, books)
    if finetune_epochs:
        if x is None or y is None:
            raise SdkError("fine-tuning the centroids needs training data (x and y)")
        books = _finetune(stack, books, x, y, finetune_epochs, lr, batch_size, seed)
    return books


def _apply(
    stack: Stack, books: Mapping[str, Codebook], weights: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Set the shared tensors over ``weights`` (default: the stack's current weights); returns
    every weight as set, so a caller need not read them back."""
    masks = stack.masks or {}
    out = dict(stack.get_weights() if weights is None else weights)
    out.update({n: b.weights(masks.get(n)) for n, b in books.items()})
    stack.set_weights(out)
    return out


def _finetune(
    stack: Stack, books: dict[str, Codebook], x: Any, y: Any, epochs: int, lr: float, batch_size: int, seed: int
) -> dict[str, Codebook]:
    spec = stack._need_model()
    x = spec.check_input(x, finite=True)
    y = metrics.check_targets(spec, "cross_entropy", y, len(x))
    step = stack.train_step("cross_entropy", Optimizer("sgd", lr=lr))
    masks = stack.masks or {}
    rng = np.random.default_rng(seed)
    before = stack.get_weights()  # after each step: what _apply set, not read back again
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            float(step(x[batch], y[batch]))
            after = stack.get_weights()
            for name, book in list(books.items()):
                kept = (masks[name] != 0) if name in masks else np.ones(book.indices.shape, bool)
                moved = np.bincount(
                    book.indices[kept], weights=(after[name] - before[name])[kept], minlength=len(book.centroids)
                )
                centroids = (book.centroids + moved).astype(np.float16).astype(np.float32)
                books[name] = attrs.evolve(book, centroids=centroids)
            before = _apply(stack, books, after)
    return books
