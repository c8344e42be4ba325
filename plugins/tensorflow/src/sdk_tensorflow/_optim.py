"""A Keras optimizer that follows the core's update rules exactly (sdk_core/optim.py).

Keras' built-in optimizers differ from those rules in small ways that show in the numbers:
Adam adds epsilon to the bias-corrected root ("epsilon hat"), RMSprop and Adagrad put epsilon
inside the square root, Adagrad starts its accumulator at 0.1, SGD scales momentum by the
learning rate at each step, and ``weight_decay`` is always decoupled. ``CoreOptimizer``
subclasses ``keras.optimizers.Optimizer`` (so Keras drives the iterations, the learning-rate
schedule and the slot variables) and implements the rules in its ``update_step``.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from sdk_core import Optimizer, Schedule


class CoreSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``Schedule.lr_at`` in TensorFlow ops, a function of Keras' iteration counter."""

    def __init__(self, base_lr: float, schedule: Schedule) -> None:
        self.base_lr, self.s = base_lr, schedule

    def __call__(self, step):
        s, t = self.s, tf.cast(step, tf.float32)
        after = t - s.warmup_steps
        if s.kind == "step":
            lr = self.base_lr * tf.pow(s.gamma, tf.floor(after / s.step_size))
        elif s.kind == "cosine":
            span = s.total_steps - s.warmup_steps
            done = tf.clip_by_value(after, 0.0, float(span))
            lr = s.min_lr + (self.base_lr - s.min_lr) * 0.5 * (1 + tf.cos(math.pi * done / span))
        else:
            lr = tf.constant(self.base_lr, tf.float32)
        if s.warmup_steps:
            lr = tf.where(t < s.warmup_steps, self.base_lr * (t + 1) / s.warmup_steps, lr)
        return lr

    def get_config(self):
        return {"base_lr": self.base_lr}


class CoreOptimizer(keras.optimizers.Optimizer):
    """sgd (momentum, Nesterov), adagrad, rmsprop, adam, adamw with L2 or decoupled decay."""

    SLOTS = {"sgd": ("buf",), "adagrad": ("sum",), "rmsprop": ("v",), "adam": ("m", "v"), "adamw": ("m", "v")}

    def __init__(self, rule: Optimizer) -> None:
        lr = rule.lr if rule.schedule.is_constant else CoreSchedule(rule.lr, rule.schedule)
        super().__init__(learning_rate=lr, name=f"core_{rule.name}")
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
            if r.momentum:
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
            t = ops.cast(self.iterations + 1, dt)
            if r.name == "adamw" and r.weight_decay:
                self.assign(variable, variable * (1 - lr * r.weight_decay))
            self.assign(slot["m"], r.beta1 * slot["m"] + (1 - r.beta1) * g)
            self.assign(slot["v"], r.beta2 * slot["v"] + (1 - r.beta2) * g * g)
            m_hat = slot["m"] / (1 - ops.power(ops.cast(r.beta1, dt), t))
            v_hat = slot["v"] / (1 - ops.power(ops.cast(r.beta2, dt), t))
            self.assign_sub(variable, lr * m_hat / (ops.sqrt(v_hat) + r.eps))
