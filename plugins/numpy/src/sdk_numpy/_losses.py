"""Losses with their gradients: ``(value, d value / d output)``."""
from __future__ import annotations

import numpy as np

from ._ops import softmax


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over all positions of ``-log softmax(logits)[y]``."""
    p = softmax(logits)
    n = y.size
    picked = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    value = -np.log(np.maximum(picked, np.finfo(p.dtype).tiny)).mean()
    grad = p
    np.put_along_axis(grad, y[..., None], np.take_along_axis(grad, y[..., None], axis=-1) - 1, axis=-1)
    return value, grad / np.asarray(n, grad.dtype)


def mse(output: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over all elements of ``(output - y)^2``."""
    diff = output - y.astype(output.dtype, copy=False)
    return (diff * diff).mean(), diff * np.asarray(2.0 / diff.size, output.dtype)


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}
