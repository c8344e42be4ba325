"""The core's optimizers as optax transformations, and its schedule as an optax schedule."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdk_core import Optimizer, Schedule
from sdk_core.model.optim import OptimizerState, state_slots

from ._parallel import full, place


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


def _slot(field: str, optimizer: Optimizer) -> str | None:
    """The canonical slot an optax state field holds (``count`` is the step)."""
    if field == "nu":
        return "square_avg" if optimizer.name == "rmsprop" else "exp_avg_sq"
    return {"mu": "exp_avg", "trace": "momentum", "sum_of_squares": "sum"}.get(field)


def _walk(path) -> tuple[str | None, str | None]:
    """The last state field and the parameter name on a tree path."""
    field = name = None
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            field = key.name
        elif isinstance(key, jax.tree_util.DictKey):
            name = str(key.key)
    return field, name


def get_state(opt_state, optimizer: Optimizer) -> OptimizerState:
    """The optax state of the core's optimizer in the canonical layout."""
    slots: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in state_slots(optimizer)}
    step = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        field, name = _walk(path)
        slot = _slot(field or "", optimizer)
        if field == "count":
            step = max(step, int(full(leaf)))
        elif slot in slots and name is not None:
            slots[slot][name] = full(leaf)
    return OptimizerState(step, slots)


def set_state(opt_state, state: OptimizerState, optimizer: Optimizer, device):
    """A new optax state holding ``state`` (same tree, leaves replaced), on ``device``, or laid
    out as the leaves it replaces when ``device`` is None (a sharded step's state)."""

    def put(value, leaf):
        if device is None:
            return place(np.asarray(value, leaf.dtype), leaf.sharding)
        return jax.device_put(jnp.asarray(value, leaf.dtype), device)

    def replace(path, leaf):
        field, name = _walk(path)
        slot = _slot(field or "", optimizer)
        if field == "count":
            return put(state.step, leaf)
        if slot in state.slots and name is not None:
            return put(state.slots[slot][name], leaf)
        return leaf

    return jax.tree_util.tree_map_with_path(replace, opt_state)
