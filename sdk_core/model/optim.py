"""Optimizer, learning-rate schedule and loss descriptions shared by every framework.

The update rules are defined here so that every plugin implements the same thing
(``t`` counts completed steps from 0, ``g`` is the gradient, ``wd`` the weight decay):

- ``sgd``: ``g += wd p``; with momentum ``b = momentum b + g`` (``b = g`` on the first
  step); the update is ``b`` (``g + momentum b`` with ``nesterov``); ``p -= lr update``.
  Batch gradient descent is ``sgd`` with ``batch_size=None`` in ``fit``.
- ``adagrad``: ``g += wd p``; ``s += g^2``; ``p -= lr g / (sqrt(s) + eps)``; eps 1e-10.
- ``rmsprop``: ``g += wd p``; ``v = rho v + (1 - rho) g^2``; ``p -= lr g / (sqrt(v) + eps)``;
  rho 0.99, eps 1e-8.
- ``adam``: ``g += wd p``; ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
  ``p -= lr m_hat / (sqrt(v_hat) + eps)`` with bias-corrected ``m_hat, v_hat``; eps 1e-8.
- ``adamw``: ``p *= 1 - lr wd`` (decoupled) then the ``adam`` update without ``g += wd p``.

Weight decay applies to every trainable weight, biases included. Losses: ``cross_entropy``
(logits on the last axis against int class ids, mean over all positions) and ``mse`` (mean
over all elements).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from ..errors import SpecError

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "exponential")
LOSSES = ("cross_entropy", "mse")
DEFAULT_EPS = {"sgd": 0.0, "adagrad": 1e-10, "rmsprop": 1e-8, "adam": 1e-8, "adamw": 1e-8}


class ArrayOps(Protocol):
    """The array functions :meth:`Schedule.lr_at` needs (numpy, jax.numpy and
    tf.experimental.numpy have them all)."""

    def floor(self, x: Any, /) -> Any: ...
    def cos(self, x: Any, /) -> Any: ...
    def minimum(self, x: Any, y: Any, /) -> Any: ...
    def maximum(self, x: Any, y: Any, /) -> Any: ...
    def where(self, condition: Any, x: Any, y: Any, /) -> Any: ...


class _PythonOps:
    """:class:`ArrayOps` on Python numbers (the host-side schedule)."""

    floor = staticmethod(math.floor)
    cos = staticmethod(math.cos)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def where(condition: Any, x: Any, y: Any) -> Any:
        return x if condition else y


PYTHON_OPS: ArrayOps = _PythonOps()


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _choice(options: tuple[str, ...]) -> Validator:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in options:
            raise SpecError(f"'{attribute.name}' must be one of {', '.join(options)} (got {value!r})")

    return check


def _finite(value: Any) -> bool:
    """A real number (not a bool) that a float holds finitely: NaN, infinity and ints too large
    for a float (``10**400``) are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> Validator:
    """An attrs validator: a finite number from ``low`` to ``high`` (each bound included unless
    ``*_open``); the message reads "'field' must be a finite number > 0.0 and <= 0.1 (got 2)"."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        ok = (
            _finite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            bounds = f"{'>' if low_open else '>='} {low}"
            if high != math.inf:
                bounds += f" and {'<' if high_open else '<='} {high}"
            raise SpecError(f"'{attribute.name}' must be a finite number {bounds} (got {value!r})")

    return check


def _flag(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"'{attribute.name}' must be true or false (got {value!r})")


def _steps(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"'{attribute.name}' must be an int >= 0 (got {value!r})")


@attrs.frozen
class Schedule:
    """Learning rate as a function of the step: linear warmup, then constant, step, cosine or
    exponential.

    - warmup: ``lr (t + 1) / warmup_steps`` for ``t < warmup_steps``;
    - ``step``: ``lr gamma ** ((t - warmup_steps) // step_size)``, ``gamma`` in (0, 1];
    - ``exponential``: ``lr gamma ** (t - warmup_steps)``, any ``gamma`` > 0 (above 1 it grows:
      the learning-rate range test sweeps with it);
    - ``cosine``: ``min_lr + (lr - min_lr)(1 + cos(pi s / S)) / 2`` with
      ``s = min(t - warmup_steps, S)`` and ``S = total_steps - warmup_steps``.
    """

    kind: str = attrs.field(default="constant", validator=_choice(SCHEDULES))
    warmup_steps: int = attrs.field(default=0, validator=_steps)
    step_size: int = attrs.field(default=1, validator=_steps)
    gamma: float = attrs.field(default=0.1, validator=number(0.0, 1e6, low_open=True))
    total_steps: int = attrs.field(default=0, validator=_steps)
    min_lr: float = attrs.field(default=0.0, validator=number(0.0))

    def __attrs_post_init__(self) -> None:
        if self.kind == "step" and self.step_size < 1:
            raise SpecError("'step_size' must be a positive int for a step schedule (got 0)")
        if self.kind == "step" and self.gamma > 1:
            raise SpecError(f"'gamma' must be a number in (0, 1] for a step schedule (got {self.gamma!r})")
        if self.kind == "cosine" and self.total_steps <= self.warmup_steps:
            raise SpecError(f"'total_steps' must exceed 'warmup_steps' for a cosine schedule (got {self.total_steps})")

    def lr_at(self, base_lr: float, step: Any, ops: ArrayOps | None = None) -> Any:
        """The learning rate of the update numbered ``step`` (0 for the first).

        This is the one definition of the schedule. With ``ops=None`` it computes a Python
        float from an int ``step``; a plugin that needs the rate inside a compiled graph passes
        its array namespace as ``ops`` (``jax.numpy``, ``tf.experimental.numpy``: anything
        with ``floor``, ``cos``, ``minimum``, ``maximum`` and ``where``) and a step tensor.
        """
        xp: ArrayOps = ops or PYTHON_OPS
        after = xp.maximum(step - self.warmup_steps, 0)  # warmup's rate replaces what is < 0
        if self.kind == "step":
            value = base_lr * self.gamma ** xp.floor(after / self.step_size)
        elif self.kind == "exponential":
            value = base_lr * self.gamma**after
        elif self.kind == "cosine":
            span = self.total_steps - self.warmup_steps
            done = xp.minimum(after, span)
            value = self.min_lr + (base_lr - self.min_lr) * 0.5 * (1 + xp.cos(math.pi * done / span))
        else:
            value = base_lr + 0 * step
        if self.warmup_steps:
            value = xp.where(step < self.warmup_steps, base_lr * (step + 1) / self.warmup_steps, value)
        return value

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant" and self.warmup_steps == 0


def _schedule(value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if value is None:
        return Schedule()
    if isinstance(value, dict):
        known = {f.name for f in attrs.fields(Schedule)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise SpecError(f"'schedule' has an unknown field '{unknown[0]}' (fields: {', '.join(sorted(known))})")
        return Schedule(**value)
    raise SpecError(f"'schedule' must be a Schedule or an object (got {value!r})")


@attrs.frozen
class Optimizer:
    """An optimizer by name with its hyper-parameters; ``eps=None`` takes the name's default."""

    name: str = attrs.field(default="adam", validator=_choice(OPTIMIZERS))
    lr: float = attrs.field(default=1e-3, validator=number(0.0, low_open=True))
    momentum: float = attrs.field(default=0.0, validator=number(0.0, 1.0, high_open=True))
    nesterov: bool = attrs.field(default=False, validator=_flag)
    beta1: float = attrs.field(default=0.9, validator=number(0.0, 1.0, high_open=True))
    beta2: float = attrs.field(default=0.999, validator=number(0.0, 1.0, low_open=True, high_open=True))
    rho: float = attrs.field(default=0.99, validator=number(0.0, 1.0, low_open=True, high_open=True))
    eps: float | None = attrs.field(default=None, validator=attrs.validators.optional(number(0.0)))
    weight_decay: float = attrs.field(default=0.0, validator=number(0.0))
    schedule: Schedule = attrs.field(factory=Schedule, converter=_schedule)

    def __attrs_post_init__(self) -> None:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise SpecError("'nesterov' needs the sgd optimizer with 'momentum' > 0")
        if self.eps is None:
            object.__setattr__(self, "eps", DEFAULT_EPS[self.name])
        if self.name != "sgd" and not self.eps:
            raise SpecError(f"'eps' must be > 0 for {self.name}: it keeps the update from dividing by zero (got 0)")

    def lr_at(self, step: int) -> float:
        """The learning rate of the update numbered ``step`` (0 for the first)."""
        return float(self.schedule.lr_at(self.lr, step))

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise SpecError(f"'loss' must be one of {', '.join(LOSSES)} (got {loss!r})")
    return loss


# -- optimizer state in the canonical layout ---------------------------------------------------
STATE_SLOTS = {
    "sgd": ("momentum",),  # b (only with momentum > 0)
    "adagrad": ("sum",),  # s
    "rmsprop": ("square_avg",),  # v
    "adam": ("exp_avg", "exp_avg_sq"),  # m, v
    "adamw": ("exp_avg", "exp_avg_sq"),
}
"""The canonical names of each optimizer's per-weight state (torch's ``state_dict`` names)."""


def state_slots(optimizer: Optimizer) -> tuple[str, ...]:
    """The state an optimizer keeps per trainable weight (none for plain sgd)."""
    if optimizer.name == "sgd" and not optimizer.momentum:
        return ()
    return STATE_SLOTS[optimizer.name]


@attrs.frozen(eq=False)
class OptimizerState:
    """An optimizer's state, the same in every framework: ``step`` updates done (the schedule's
    position and Adam's bias correction follow from it) and, per slot of :data:`STATE_SLOTS`,
    one array per trainable weight, named and shaped as the canonical weight it belongs to.
    This is what lets a run checkpointed in one framework resume in another."""

    step: int
    slots: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def check(self, optimizer: Optimizer, shapes: dict[str, tuple[int, ...]], what: str = "optimizer state") -> None:
        """Raise :class:`SpecError` unless the slots are ``optimizer``'s and every array has
        the shape of its weight (``shapes``: the trainable weights' names and shapes)."""
        if isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 0:
            raise SpecError(f"{what}: 'step' must be an int >= 0 (got {self.step!r})")
        if set(self.slots) != set(state_slots(optimizer)):
            raise SpecError(
                f"{what} holds slots {sorted(self.slots)}; {optimizer.name} keeps {sorted(state_slots(optimizer))}"
            )
        for slot, arrays in self.slots.items():
            if set(arrays) != set(shapes):
                missing = sorted(set(shapes) - set(arrays)) or sorted(set(arrays) - set(shapes))
                raise SpecError(f"{what}: slot '{slot}' does not match the model's weights ({missing[:3]})")
            for name, value in arrays.items():
                if tuple(value.shape) != shapes[name]:
                    raise SpecError(f"{what}: '{slot}' of '{name}' has shape {tuple(value.shape)}, not {shapes[name]}")
