"""Optimizer comparison and model-scale sweep: the same data, budget and starting weights for
every contender, with validation accuracy against time and steps."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError
from ..model import spec as S
from ..model.estimate import forward_flops, training_memory
from ..model.optim import Optimizer, Schedule
from ..runtime.stack import Stack
from ..runtime.training import TrainingDiverged
from .lr import range_test

OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer("sgd"),
    "momentum": Optimizer("sgd", momentum=0.9),
    "nesterov": Optimizer("sgd", momentum=0.9, nesterov=True),
    "adagrad": Optimizer("adagrad"),
    "rmsprop": Optimizer("rmsprop"),
    "adam": Optimizer("adam"),
}
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@attrs.frozen
class Run:
    """One contender trained for the budget: per epoch the elapsed seconds, the updates done
    and the validation accuracy."""

    name: str
    lr: float
    seconds: tuple[float, ...]
    steps: tuple[int, ...]
    accuracy: tuple[float, ...]
    diverged: bool = False

    @property
    def final(self) -> float:
        return self.accuracy[-1] if self.accuracy else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "final_accuracy": self.final}


def annealed(optimizer: Optimizer, updates: int) -> Optimizer:
    """``optimizer`` with its rate as the peak of a cosine decay over ``updates``: the schedule
    Smith pairs the range test with (the rate found is the largest that still trains well)."""
    return attrs.evolve(optimizer, schedule=Schedule("cosine", total_steps=max(updates, 1)))


def train_run(
    stack: Stack, name: str, optimizer: Optimizer, data: Data, epochs: int, batch_size: int, seed: int = 0
) -> Run:
    """Train ``stack`` with ``optimizer`` for ``epochs``, its rate decaying along a cosine over
    the run, recording the curve; a run that diverges keeps what it reached."""
    x, y, xv, yv = data
    per_epoch = math.ceil(len(x) / batch_size)
    optimizer = annealed(optimizer, per_epoch * epochs)
    try:
        history = stack.fit(
            x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, seed=seed, validation_data=(xv, yv)
        )
    except TrainingDiverged:
        return Run(name, optimizer.lr, (), (), (), diverged=True)
    seconds = tuple(float(s) for s in np.cumsum(history.seconds))
    steps = tuple(per_epoch * (i + 1) for i in range(epochs))
    return Run(name, optimizer.lr, seconds, steps, tuple(history.val_accuracy))


def compare_optimizers(
    make_stack: Callable[[S.ModelSpec], Stack],
    spec: S.ModelSpec,
    data: Data,
    epochs: int = 3,
    batch_size: int = 32,
    names: Sequence[str] = tuple(OPTIMIZERS),
    range_steps: int = 100,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[Run]:
    """Each optimizer of ``names`` at the learning rate its own range test suggests (the peak
    of a cosine decay over the run), trained for the same ``epochs`` from the same initial
    weights."""
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        raise SdkError(f"unknown optimizer '{unknown[0]}' (known: {', '.join(OPTIMIZERS)})")
    runs = []
    for name in names:
        stack = make_stack(spec)
        found = range_test(stack, data[0], data[1], OPTIMIZERS[name], steps=range_steps, batch_size=batch_size)
        run = train_run(stack, name, attrs.evolve(OPTIMIZERS[name], lr=found.suggested), data, epochs, batch_size, seed)
        runs.append(run)
        if progress:
            progress(f"optimizer {name}: lr {found.suggested:.3g}, accuracy {run.final:.4f}")
    return runs


# -- model scale --------------------------------------------------------------------------------
def scale_spec(spec: S.ModelSpec, width: float = 1.0, depth: int = 1) -> S.ModelSpec:
    """``spec`` with its hidden widths times ``width`` (dense units but the output layer's, conv
    filters, the embedding width, rounded to a multiple of the attention heads) and its
    transformer blocks repeated ``depth`` times."""
    if not width > 0 or (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise SdkError(f"'width' must be > 0 and 'depth' an int >= 1 (got {width!r}, {depth!r})")
    heads = max((getattr(l, "num_heads", 1) for l in spec.layers), default=1)
    last = max(i for i, l in enumerate(spec.layers) if isinstance(l, (S.Dense, S.Conv2D)) or i == 0)
    layers: list[S.Layer] = []
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, S.Dense) and i != last:
            layer = attrs.evolve(layer, units=max(1, round(layer.units * width)))
        elif isinstance(layer, S.Conv2D) and i != last:
            layer = attrs.evolve(layer, filters=max(1, round(layer.filters * width)))
        elif isinstance(layer, S.Embedding):
            layer = attrs.evolve(layer, dim=max(heads, round(layer.dim * width / heads) * heads))
        layers += [layer] * (depth if isinstance(layer, S.TransformerBlock) else 1)
    name = f"{spec.name or 'model'} x{width:g}" + (f" depth x{depth}" if depth > 1 else "")
    return S.ModelSpec(spec.input_shape, layers, spec.input_dtype, name)


@attrs.frozen
class ScalePoint:
    """One scale: its size, cost and accuracy (``trained`` false: too large here, estimated only)."""

    width: float
    depth: int
    parameters: int
    flops: int
    memory_bytes: int
    trained: bool
    seconds_per_epoch: float | None = None
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def pareto(points: Sequence[ScalePoint]) -> list[ScalePoint]:
    """The trained points no other beats in both fewer parameters and higher accuracy."""
    trained = sorted((p for p in points if p.trained), key=lambda p: (p.parameters, -(p.accuracy or 0)))
    front, best = [], -1.0
    for p in trained:
        if (p.accuracy or 0) > best:
            front.append(p)
            best = p.accuracy or 0
    return front


def scale_sweep(
    make_stack: Callable[[S.ModelSpec], Stack],
    spec: S.ModelSpec,
    data: Data,
    widths: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    depths: Sequence[int] = (1,),
    epochs: int = 2,
    batch_size: int = 32,
    optimizer: Optimizer | None = None,
    memory_limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ScalePoint]:
    """Train each width x depth for ``epochs``: parameters, FLOPs, time per epoch and accuracy.
    A scale whose estimated training memory exceeds ``memory_limit`` is not trained: its
    estimate stands in (``sdk estimate`` for scales too large to train here)."""
    points = []
    for depth in depths:
        for width in widths:
            scaled = scale_spec(spec, width, depth)
            memory = training_memory(scaled, batch_size)["total"]
            point = ScalePoint(width, depth, scaled.param_count(), forward_flops(scaled), memory, False)
            if memory_limit is None or memory <= memory_limit:
                run = train_run(make_stack(scaled), scaled.name, optimizer or Optimizer(), data, epochs, batch_size)
                per_epoch = run.seconds[-1] / epochs if run.seconds else None
                point = attrs.evolve(point, trained=True, seconds_per_epoch=per_epoch, accuracy=run.final)
            points.append(point)
            if progress:
                done = f"accuracy {point.accuracy:.4f}" if point.trained else "estimated only (too large here)"
                progress(f"scale width x{width:g} depth x{depth}: {point.parameters:,} parameters, {done}")
    return points
