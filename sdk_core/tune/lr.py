"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017; the "LR finder" of fast.ai and Lightning).

The learning rate grows exponentially from ``start`` to ``end`` over ``steps`` updates (the
core's ``exponential`` schedule, so it runs inside every framework's compiled step). The sweep
stops early when the loss, smoothed by a bias-corrected running average, exceeds ``diverge``
times its minimum, or is not finite. For the suggestion the losses are smoothed by a centred
moving average (no lag behind the sweep); the suggestion is the rate where that falls fastest
against log(lr) (the steepest descent), and the rate at its minimum divided by 10 is reported
too. The model's weights are put
back afterwards: the test trains nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError
from ..model import spec as S
from ..model.optim import Optimizer, Schedule
from ..runtime.stack import Stack

SMOOTHING = 0.98


@attrs.frozen
class RangeTest:
    """What the range test measured and suggests."""

    optimizer: str
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggested: float
    min_over_10: float
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def built(stack: Stack) -> S.ModelSpec:
    """The stack's model spec, or an error saying to build one."""
    if stack.spec is None:
        raise SdkError("no model: build(spec) or load(path) the stack first")
    return stack.spec


def centred(losses: list[float], window: int) -> list[float]:
    """The moving average of ``losses`` over ``window`` points centred on each (narrower at
    the ends): smooth, and unlike a running average it does not lag behind the sweep."""
    half = max(window, 1) // 2
    return [float(np.mean(losses[max(0, i - half) : i + half + 1])) for i in range(len(losses))]


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """``(steepest, min_over_10)``: the rate where the smoothed loss falls fastest per unit of
    log(lr) before its minimum (the slope taken across a few points, so one noisy batch does
    not decide), and the rate at the minimum divided by 10."""
    if len(lrs) < 3:
        raise SdkError("the range test needs at least 3 updates to suggest a learning rate")
    low = int(np.argmin(smoothed))
    half = max(1, len(lrs) // 40)
    logs = np.log(np.asarray(lrs))
    slopes = [
        (smoothed[i + half] - smoothed[i - half]) / (logs[i + half] - logs[i - half])
        for i in range(half, min(low, len(lrs) - half))
    ]
    steepest = half + int(np.argmin(slopes)) if slopes else low
    return float(lrs[steepest]), float(lrs[low]) / 10


def range_test(
    stack: Stack,
    x: np.ndarray,
    y: np.ndarray,
    optimizer: Optimizer | str = "sgd",
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 200,
    batch_size: int = 32,
    loss: str = "cross_entropy",
    diverge: float = 4.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> RangeTest:
    """Sweep the learning rate of ``optimizer`` (a name, or an :class:`Optimizer` whose other
    settings are kept) from ``start`` to ``end`` over ``steps`` updates on batches of ``x``,
    ``y``; the stack's weights are restored afterwards. ``progress(done, steps)`` is called
    after each update."""
    if not (0 < start < end) or not math.isfinite(end):
        raise SdkError(f"the range test needs 0 < start < end (got start {start!r}, end {end!r})")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3:
        raise SdkError(f"'steps' must be an int >= 3 (got {steps!r})")
    if diverge <= 1:
        raise SdkError(f"'diverge' must be above 1 (got {diverge!r})")
    spec = built(stack)
    if spec.param_count() == 0:
        raise SdkError("the model has no trainable parameters: there is no learning rate to find")
    base = Optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    gamma = (end / start) ** (1 / (steps - 1))
    rule = attrs.evolve(base, lr=start, schedule=Schedule("exponential", gamma=gamma))
    saved = stack.get_weights()
    step = stack.train_step(loss, rule)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    lrs: list[float] = []
    losses: list[float] = []
    stopped, average, lowest = False, 0.0, math.inf  # the running average watches for divergence
    try:
        for t in range(steps):
            at = (t * batch_size) % len(x)
            if at + batch_size > len(x):
                order = rng.permutation(len(x))
            idx = order[at : at + batch_size]
            value = float(step(x[idx], y[idx]))
            lrs.append(rule.lr_at(t))
            losses.append(value)
            if progress is not None:
                progress(t + 1, steps)
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            running = average / (1 - SMOOTHING ** (t + 1))  # bias-corrected
            lowest = min(lowest, running)
            if not math.isfinite(value) or (t > 5 and running > diverge * lowest):
                stopped = True
                break
    finally:
        stack.set_weights(saved)  # the test trains nothing: the model is as it was
    finite = [(r, v) for r, v in zip(lrs, losses, strict=True) if math.isfinite(v)]
    if len(finite) < 3:
        raise SdkError(f"the loss diverged within {len(lrs)} updates: lower 'start' (got {start!r})")
    lrs, losses = [r for r, _ in finite], [v for _, v in finite]
    smoothed_all = centred(losses, max(3, steps // 15))
    steepest, min_over_10 = suggest(lrs, smoothed_all)
    return RangeTest(rule.name, tuple(lrs), tuple(losses), tuple(smoothed_all), steepest, min_over_10, stopped)
