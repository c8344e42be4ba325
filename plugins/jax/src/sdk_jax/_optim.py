"""The core's optimizers as optax transformations, and its schedule as an optax schedule."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from sdk_core import Optimizer, Schedule


def schedule_fn(base_lr: float, s: Schedule) -> Callable[[jax.Array], jax.Array]:
    """The core's schedule (``Schedule.lr_at``, evaluated with ``jax.numpy``) as an optax
    schedule: a function of the update count."""
    return lambda count: jnp.asarray(s.lr_at(base_lr, count.astype(jnp.float32), jnp), jnp.float32)


def make_optimizer(o: Optimizer) -> optax.GradientTransformation:
    """optax's optimizers configured to the core's rules (sdk_core/model/optim.py)."""
    lr = o.lr if o.schedule.is_constant else schedule_fn(o.lr, o.schedule)
    if o.name == "sgd":
        tx = optax.sgd(lr, momentum=o.momentum or None, nesterov=o.nesterov)
    elif o.name == "adagrad":
        tx = optax.adagrad(lr, initial_accumulator_value=0.0, eps=o.eps)
    elif o.name == "rmsprop":
        tx = optax.rmsprop(lr, decay=o.rho, eps=o.eps, eps_in_sqrt=False)
    elif o.name == "adamw":
        return optax.adamw(lr, b1=o.beta1, b2=o.beta2, eps=o.eps, weight_decay=o.weight_decay)
    else:
        tx = optax.adam(lr, b1=o.beta1, b2=o.beta2, eps=o.eps)
    return optax.chain(optax.add_decayed_weights(o.weight_decay), tx) if o.weight_decay else tx
