"""Losses and accuracy computed in numpy on model outputs, the same for every framework."""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from .optim import check_loss
from .spec import ModelSpec


def check_targets(spec: ModelSpec, loss: str, y: object, n: int) -> np.ndarray:
    """Return targets as an array fit for ``loss`` on ``spec``'s output, or raise naming the shape."""
    check_loss(loss)
    y = np.asarray(y)
    out = spec.output_shape
    need = out[:-1] if loss == "cross_entropy" else out
    if y.shape != (n,) + need:
        raise SpecError(f"targets have shape {y.shape}, the model needs {(n,) + need} for {loss}")
    if loss == "cross_entropy":
        if not np.issubdtype(y.dtype, np.integer):
            raise SpecError(f"cross_entropy targets must be integer class ids (got {y.dtype})")
        if y.size and (y.min() < 0 or y.max() >= out[-1]):
            raise SpecError(f"class ids must lie in [0, {out[-1]}) (got {y.min()}..{y.max()})")
        return y.astype(np.int64, copy=False)
    return y.astype(np.float32, copy=False)


def loss_value(loss: str, output: np.ndarray, y: np.ndarray) -> float:
    """Mean loss of ``output`` against ``y``: cross-entropy on logits, or squared error."""
    output = np.asarray(output, dtype=np.float64)
    if loss == "cross_entropy":
        shifted = output - output.max(axis=-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return float(-np.take_along_axis(logp, y[..., None], axis=-1).mean())
    return float(np.mean((output - y) ** 2))


def accuracy(output: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(output, axis=-1) == y))
