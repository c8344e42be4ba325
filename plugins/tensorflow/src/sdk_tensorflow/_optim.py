"""Keras optimizers that follow the core's update rules exactly (sdk_core/model/optim.py).

Keras' built-in optimizers differ from those rules in small ways that show in the numbers:
Adam adds epsilon to the bias-corrected root ("epsilon hat"), RMSprop and Adagrad put epsilon
inside the square root, Adagrad starts its accumulator at 0.1, SGD folds the learning rate
into its momentum buffer (equal only at a constant rate), and ``weight_decay`` is always
decoupled. So Keras' SGD is used where it computes the core rule, and ``CoreOptimizer`` for
the rest: it subclasses ``keras.optimizers.Optimizer`` (Keras drives the iterations, the
learning-rate schedule and the slot variables) and implements the rules in ``update_step``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sdk_core import Optimizer
from sdk_core.model.optim import OptimizerState

from ._framework import keras, tf

tnp = tf.experimental.numpy

ops = keras.ops


class CoreSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The core's schedule (``Schedule.lr_at``, evaluated with TensorFlow's numpy ops) on
    Keras' iteration counter, in float64 (the update casts it to the weights' dtype, as the
    reference does)."""

    def __init__(self, rule: Optimizer) -> None:
        self.rule, self.base_lr, self.s = rule, rule.lr, rule.schedule

    def __call__(self, step):
        return tf.cast(self.s.lr_at(self.base_lr, tf.cast(step, tf.float64), tnp), tf.float64)

    def get_config(self):
        return {"optimizer": self.rule.to_dict()}


class CoreOptimizer(keras.optimizers.Optimizer):
    """sgd (momentum, Nesterov), adagrad, rmsprop, adam, adamw with L2 or decoupled decay."""

    SLOTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "sgd": ("buf",),
        "adagrad": ("sum",),
        "rmsprop": ("v",),
        "adam": ("m", "v"),
        "adamw": ("m", "v"),
    }

    def __init__(self, rule: Optimizer) -> None:
        super().__init__(learning_rate=CoreSchedule(rule), name=f"core_{rule.name}")
        self.rule = rule

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        names = self.SLOTS[self.rule.name] if self.rule.name != "sgd" or self.rule.momentum else ()
        self.slots = {n: [self.add_variable_from_reference(v, n) for v in variables] for n in names}

    def update_step(self, gradient, variable, learning_rate):
        r, dt = self.rule, variable.dtype
        lr = ops.cast(learning_rate, dt)
        g = ops.cast(tf.convert_to_tensor(gradient), dt)  # embeddings give IndexedSlices
        slot = {n: vs[self._get_variable_index(variable)] for n, vs in self.slots.items()}
        if r.weight_decay and r.name != "adamw":
            g = g + r.weight_decay * variable
        if r.name == "sgd":
            if r.momentum:  # the buffer starts at 0, so it holds g after the first step
                self.assign(slot["buf"], r.momentum * slot["buf"] + g)
                g = g + r.momentum * slot["buf"] if r.nesterov else slot["buf"]
            self.assign_sub(variable, lr * g)
        elif r.name == "adagrad":
            self.assign_add(slot["sum"], g * g)
            self.assign_sub(variable, lr * g / (ops.sqrt(slot["sum"]) + r.eps))
        elif r.name == "rmsprop":
            self.assign(slot["v"], r.rho * slot["v"] + (1 - r.rho) * g * g)
            self.assign_sub(variable, lr * g / (ops.sqrt(slot["v"]) + r.eps))
        else:
            t = tf.cast(self.iterations + 1, tf.float64)
            correct1 = ops.cast(1 - tf.pow(tf.constant(r.beta1, tf.float64), t), dt)
            correct2 = ops.cast(1 - tf.pow(tf.constant(r.beta2, tf.float64), t), dt)
            if r.name == "adamw" and r.weight_decay:
                self.assign(variable, variable * (1 - lr * r.weight_decay))
            self.assign(slot["m"], r.beta1 * slot["m"] + (1 - r.beta1) * g)
            self.assign(slot["v"], r.beta2 * slot["v"] + (1 - r.beta2) * g * g)
            self.assign_sub(variable, lr * (slot["m"] / correct1) / (ops.sqrt(slot["v"] / correct2) + r.eps))


def make_optimizer(rule: Optimizer, dtype: str) -> keras.optimizers.Optimizer:
    """Keras' own SGD where it computes the core rule (float32, no weight decay, and no
    momentum or a constant learning rate), :class:`CoreOptimizer` everywhere else."""
    if (
        rule.name == "sgd"
        and dtype == "float32"
        and not rule.weight_decay
        and (not rule.momentum or rule.schedule.is_constant)
    ):
        lr = rule.lr if rule.schedule.is_constant else CoreSchedule(rule)
        return keras.optimizers.SGD(lr, momentum=rule.momentum, nesterov=rule.nesterov)
    return CoreOptimizer(rule)


CANONICAL = {"buf": "momentum", "sum": "sum", "v": "square_avg", "m": "exp_avg"}


def _canonical_slot(mine: str, rule: Optimizer) -> str:
    return "exp_avg_sq" if mine == "v" and rule.name in ("adam", "adamw") else CANONICAL[mine]


def _slot_variables(native, rule: Optimizer) -> dict[str, list]:
    """The optimizer's per-weight variables by canonical slot (Keras SGD keeps a velocity)."""
    if isinstance(native, CoreOptimizer):
        return {_canonical_slot(mine, rule): variables for mine, variables in native.slots.items()}
    return {"momentum": list(native.momentums)} if rule.momentum else {}


def get_state(native, rule: Optimizer, params: dict) -> OptimizerState:
    """The Keras optimizer's state in the canonical layout (``params``: canonical name ->
    (variable, (to native, to canonical) axis permutations))."""
    slots: dict[str, dict[str, np.ndarray]] = {}
    for slot, variables in _slot_variables(native, rule).items():
        slots[slot] = {}
        for name, (var, perm) in params.items():
            value = variables[native._get_variable_index(var)].numpy()
            if not isinstance(native, CoreOptimizer):  # Keras' velocity is -lr times the core's buffer
                value = value / -rule.lr
            slots[slot][name] = value.transpose(perm[1]).copy() if perm else value.copy()
    return OptimizerState(int(native.iterations.numpy()), slots)


def set_state(native, rule: Optimizer, params: dict, state: OptimizerState) -> None:
    """Write canonical optimizer state into the Keras optimizer's variables."""
    for slot, variables in _slot_variables(native, rule).items():
        for name, (var, perm) in params.items():
            value = state.slots[slot][name]
            value = value.transpose(perm[0]) if perm else value
            if not isinstance(native, CoreOptimizer):
                value = value * -rule.lr
            variables[native._get_variable_index(var)].assign(value)
    native.iterations.assign(state.step)
