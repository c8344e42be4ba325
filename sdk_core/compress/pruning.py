"""Magnitude pruning: masks per layer or global, a polynomial sparsity schedule (Zhu & Gupta,
2017) interleaved with fine-tuning. Masks are held by the stack's training step in every
framework (:meth:`Stack.set_masks`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError
from ..model.optim import Optimizer
from ..runtime.stack import Stack

SCOPES = ("global", "layer")
FINETUNE_LR = 5e-3  # Adam's rate for fine-tuning pruned models (measured: README, compression)


def check_ratio(value: Any, what: str = "prune ratio") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SdkError(f"the {what} must be a number in [0, 1) (got {value!r})")
    return float(value)


def prunable(stack: Stack, min_axes: int = 2) -> dict[str, str]:
    """Weight name -> layer type, for every trainable weight of ``min_axes`` or more axes (by
    default the dense, conv2d, attention and block projections and embedding tables)."""
    spec = stack._need_model()
    out = {}
    for p in spec.layout():
        if p.trainable and len(p.shape) >= min_axes:
            out[p.name] = spec.layers[spec.node_of(p.name)].type
    return out


def _matches(name: str, kind: str, key: str) -> bool:
    """``key`` names a weight (``3.weight``), a node (``3``, or ``stem`` in a graph) or a layer type (``dense``)."""
    return key in (name, name.split(".", 1)[0], kind) or (key == "conv" and kind == "conv2d")


def ratios_for(
    stack: Stack, amount: float, ratios: Mapping[str, float] | None = None, keep: Iterable[str] = ()
) -> dict[str, float]:
    """The prune ratio of each prunable weight: ``ratios`` by weight name, layer index or layer
    type (``conv``/``conv2d``, ``dense``) over ``amount``; ``keep`` weights are not pruned."""
    names = prunable(stack)
    if not names:
        raise SdkError(f"model '{stack._need_model().name or 'model'}' has no weights that can be pruned")
    amount = check_ratio(amount)
    keep = list(keep)
    for key in [*(ratios or {}), *keep]:
        if not any(_matches(n, k, key) for n, k in names.items()):
            raise SdkError(f"'{key}' names no prunable weight, layer or layer type (prunable: {', '.join(names)})")
    out = {}
    for name, kind in names.items():
        if any(_matches(name, kind, key) for key in keep):
            continue
        chosen = [
            check_ratio(r, f"prune ratio for '{k}'") for k, r in (ratios or {}).items() if _matches(name, kind, k)
        ]
        out[name] = chosen[-1] if chosen else amount
    return out


def magnitude_masks(
    weights: Mapping[str, np.ndarray], ratios: Mapping[str, float], scope: str = "layer"
) -> dict[str, np.ndarray]:
    """0/1 masks dropping the smallest-magnitude weights. ``layer``: each weight loses its own
    ratio. ``global``: one threshold over all of them, set so that the total pruned equals
    the ratio-weighted count (layers whose weights are larger keep more)."""
    if scope not in SCOPES:
        raise SdkError(f"unknown prune scope '{scope}' (known: {', '.join(SCOPES)})")
    masks = {}
    if scope == "layer":
        for name, ratio in ratios.items():
            w = np.abs(weights[name]).ravel()
            k = round(ratio * w.size)
            mask = np.ones(w.size, np.float32)
            if k:
                mask[np.argsort(w, kind="stable")[:k]] = 0
            masks[name] = mask.reshape(weights[name].shape)
        return masks
    total = sum(round(r * weights[n].size) for n, r in ratios.items())
    everything = np.concatenate([np.abs(weights[n]).ravel() for n in ratios]) if ratios else np.zeros(0)
    order = np.argsort(everything, kind="stable")
    flat = np.ones(everything.size, np.float32)
    flat[order[:total]] = 0
    start = 0
    for name in ratios:
        size = weights[name].size
        masks[name] = flat[start : start + size].reshape(weights[name].shape)
        start += size
    return masks


def prune(
    stack: Stack,
    amount: float = 0.9,
    scope: str = "global",
    ratios: Mapping[str, float] | None = None,
    keep: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """Unstructured magnitude pruning of ``stack``'s model now: the masks are set on the stack
    (pruned weights are zero and stay zero in later training) and returned. Pruning again
    only removes more: weights already pruned stay pruned."""
    chosen = ratios_for(stack, amount, ratios, keep)
    weights = stack.get_weights()
    masks = magnitude_masks(weights, chosen, scope)
    for name, mask in (stack.masks or {}).items():
        if name in masks:
            # already-pruned weights are zero, so they rank first: the new mask covers them
            masks[name] = masks[name] * mask
    current = stack.masks or {}
    if set(masks) <= set(current) and all(np.array_equal(current[n], m) for n, m in masks.items()):
        return dict(current)  # nothing new to prune: the training step (and its state) stays
    stack.set_masks({**current, **masks})
    return dict(stack.masks or {})


@attrs.frozen
class Schedule:
    """Polynomial sparsity (Zhu & Gupta 2017): ``s_t = final + (initial - final) (1 - t/n)^power``
    at pruning step t of n, one step per fine-tuning epoch over the first ``n`` epochs."""

    final: float = attrs.field(default=0.9)
    initial: float = attrs.field(default=0.0)
    steps: int = attrs.field(default=4)
    power: float = attrs.field(default=3.0)

    def __attrs_post_init__(self) -> None:
        check_ratio(self.final, "final sparsity")
        check_ratio(self.initial, "initial sparsity")
        if self.initial > self.final:
            raise SdkError(f"the initial sparsity {self.initial} is above the final {self.final}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise SdkError(f"the pruning schedule needs a positive int of steps (got {self.steps!r})")
        if isinstance(self.power, bool) or not isinstance(self.power, (int, float)) or not 0 < self.power <= 10:
            raise SdkError(f"the pruning schedule's power must be in (0, 10] (got {self.power!r})")

    def sparsity(self, step: int) -> float:
        t = min(step + 1, self.steps) / self.steps
        return self.final + (self.initial - self.final) * (1 - t) ** self.power

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """``final[:steps[:initial[:power]]]``, e.g. ``0.9:4`` or ``0.95:6:0.5:3``."""
        parts = text.split(":")
        try:
            values: list[Any] = [float(parts[0])]
            if len(parts) > 1:
                values.append(int(parts[1]))
            if len(parts) > 2:
                values.append(float(parts[2]))
            if len(parts) > 3:
                values.append(float(parts[3]))
        except ValueError:
            raise SdkError(f"a prune schedule reads final[:steps[:initial[:power]]] (got {text!r})") from None
        if len(parts) > 4:
            raise SdkError(f"a prune schedule reads final[:steps[:initial[:power]]] (got {text!r})")
        names = ("final", "steps", "initial", "power")
        return cls(**dict(zip(names, values, strict=False)))


def prune_gradually(
    stack: Stack,
    x: Any,
    y: Any,
    schedule: Schedule,
    epochs: int,
    scope: str = "global",
    ratios: Mapping[str, float] | None = None,
    keep: Iterable[str] = (),
    optimizer: Optimizer | None = None,
    batch_size: int = 32,
    seed: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> dict[str, np.ndarray]:
    """Prune to ``schedule.sparsity(e)`` before each fine-tuning epoch ``e`` (the schedule
    reaches its final sparsity at epoch ``schedule.steps - 1``), then fine-tune with the
    masks held (``optimizer``: Adam at 5e-3 by default). Per-layer ``ratios`` scale with the
    schedule. ``on_epoch(epoch, sparsity,
    loss)`` reports progress. Returns the final masks."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SdkError(f"fine-tuning needs a positive int of epochs (got {epochs!r})")
    optimizer = optimizer or Optimizer("adam", lr=FINETUNE_LR)
    final = ratios_for(stack, schedule.final, ratios, keep)
    for epoch in range(epochs):
        scale = schedule.sparsity(epoch) / schedule.final if schedule.final else 0.0
        prune(stack, 0.0, scope, {n: r * scale for n, r in final.items()}, keep)
        history = stack.fit(x, y, epochs=1, batch_size=batch_size, optimizer=optimizer, seed=seed + epoch)
        if on_epoch is not None:
            on_epoch(epoch, sparsity(stack.masks or {}), history.loss[-1])
    return dict(stack.masks or {})


def sparsity(masks: Mapping[str, np.ndarray]) -> float:
    """The share of masked weights that are pruned."""
    total = sum(m.size for m in masks.values())
    return float(sum(m.size - np.count_nonzero(m) for m in masks.values()) / total) if total else 0.0
