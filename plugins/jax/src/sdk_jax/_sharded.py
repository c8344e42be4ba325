"""Sharded training (ZeRO stages 1-3) and tensor parallelism on JAX's sharded ``jit``.

One mesh over every device of the job (every process's, after ``jax.distributed``; all the
local devices when the job has one process), axes ``("data", "model")``, ``model`` of size
``tensor`` (consecutive devices, so consecutive ranks). The rules come from the spec's
canonical layout:

- ZeRO: a weight's "data share" splits its largest axis that the data axis divides (whole
  when none does). Stage 1 keeps the optimizer state in data shares, stage 2 also the
  gradients (a sharding constraint on them: XLA reduce-scatters instead of all-reducing),
  stage 3 also the parameters (XLA gathers each one where it is used).
- Tensor parallelism (Megatron): q, k, v and fc1 split column-wise (their output axis, biases
  too), o and fc2 row-wise (their input axis) over ``model``; every other weight is whole.

XLA inserts the collectives, so the step computes what the unsharded step computes: the loss
of the global batch and the same update.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils as hosts
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sdk_core import NotAvailableError
from sdk_core.model.estimate import _undivided

from ._optim import _walk
from ._parallel import per_sample, place

COLUMNS = re.compile(r"(^|\.)(q|k|v|fc1)\.(weight|bias)$")  # split on the last (output) axis
ROWS = re.compile(r"(^|\.)(o|fc2)\.weight$")  # split on the first (input) axis


def _model_axis(name: str, shape: tuple[int, ...], tensor: int) -> int | None:
    if tensor == 1:
        return None
    axis = len(shape) - 1 if COLUMNS.search(name) else 0 if ROWS.search(name) else None
    if axis is not None and shape[axis] % tensor:
        raise NotAvailableError(f"tensor parallelism over {tensor} devices cannot split '{name}' of shape {shape}")
    return axis


def _data_axis(shape: tuple[int, ...], size: int, taken: int | None) -> int | None:
    """The largest axis ``size`` divides (not ``taken``), or None."""
    axes = [i for i, n in enumerate(shape) if i != taken and n % size == 0]
    return max(axes, key=lambda i: shape[i]) if size > 1 and axes else None


class Plan:
    """The mesh and each canonical weight's shardings: ``params`` (as the step keeps the
    weights) and ``shares`` (the optimizer state and, from stage 2, the gradients)."""

    def __init__(self, spec: Any, zero: int, tensor: int) -> None:
        devices = jax.devices()
        if len(devices) % tensor:
            raise NotAvailableError(
                f"tensor parallelism over {tensor} devices needs a multiple of that many (got {len(devices)})"
            )
        why = _undivided(spec, tensor) if tensor > 1 else None
        if why:
            raise NotAvailableError(why)
        self.mesh = Mesh(np.array(devices).reshape(-1, tensor), ("data", "model"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch = NamedSharding(self.mesh, PartitionSpec("data"))
        data = self.mesh.shape["data"]
        self.params: dict[str, NamedSharding] = {}
        self.shares: dict[str, NamedSharding] = {}
        for p in spec.layout():
            if not p.trainable:
                self.params[p.name] = self.shares[p.name] = self.replicated
                continue
            model = _model_axis(p.name, p.shape, tensor)
            axes: list[str | None] = [None] * len(p.shape)
            if model is not None:
                axes[model] = "model"
            whole = NamedSharding(self.mesh, PartitionSpec(*axes))
            split = _data_axis(p.shape, data, model)
            if split is not None:
                axes[split] = "data"
            share = NamedSharding(self.mesh, PartitionSpec(*axes))
            self.shares[p.name] = share if zero >= 1 else whole
            self.params[p.name] = share if zero == 3 else whole
        # ranks of one process feed the data slices its devices hold; pad a shard to their count
        rows = {int(np.argwhere(self.mesh.devices == d)[0][0]) for d in jax.local_devices()}
        self.local_slices = len(rows)

    def state_shardings(self, tx: optax.GradientTransformation, params: Mapping[str, jax.Array]) -> Any:
        """The optax state's shardings: a weight's slots in its share, the rest replicated."""
        shapes = jax.eval_shape(tx.init, params)

        def sharding(path: Any, leaf: Any) -> NamedSharding:
            name = _walk(path)[1]
            fits = name in params and leaf.shape == params[name].shape
            return self.shares[name] if fits else self.replicated

        return jax.tree_util.tree_map_with_path(sharding, shapes)


def make_step(
    model: Any, apply: Callable, tx: Any, loss: str, masks: dict, opt_state: list, zero: int, tensor: int
) -> Callable[[np.ndarray, np.ndarray], jax.Array]:
    """``step(x, y) -> loss`` for this process's shard ``x``, ``y`` of each global batch (the
    whole batch when the job has one process). Reshards the model's weights and ``masks`` and
    replaces ``opt_state[0]`` with an optax state initialised in its shards."""
    plan = Plan(model.spec, zero, tensor)
    model.reshard(plan.params, plan.replicated)
    masks = {n: place(np.asarray(m), plan.params[n]) for n, m in masks.items()}
    p_sh = {n: plan.params[n] for n in model.params}
    s_sh = {n: plan.replicated for n in model.state}
    m_sh = {n: plan.params[n] for n in masks}
    g_sh = {n: plan.shares[n] for n in model.params}
    o_sh = plan.state_shardings(tx, model.params)
    opt_state[0] = jax.jit(tx.init, out_shardings=o_sh)(model.params)
    loss_of = per_sample(loss)
    base = np.asarray(jax.random.key_data(model.key))
    r, b = plan.replicated, plan.batch

    def _update(params, state, opt, count, x, y, w, masks):
        key = jax.random.fold_in(jax.random.wrap_key_data(base), count)

        def objective(p):
            out, new_state = apply(p, state, x, True, key)
            return jnp.sum(loss_of(out, y) * w) / jnp.sum(w), new_state

        (value, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        if zero >= 2:
            grads = jax.lax.with_sharding_constraint(grads, g_sh)
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
        params = {n: p * masks[n] if n in masks else p for n, p in params.items()}
        return params, state, opt, value

    update = jax.jit(
        _update,
        in_shardings=(p_sh, s_sh, o_sh, r, b, b, b, m_sh),
        out_shardings=(p_sh, s_sh, o_sh, r),
        donate_argnums=(0, 1, 2),
    )
    count = [0]

    def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
        x, y = np.asarray(x), np.asarray(y)
        rows = len(x)
        if jax.process_count() > 1:
            rows = int(np.max(hosts.process_allgather(np.array([rows]))))
        rows = -(-rows // plan.local_slices) * plan.local_slices
        pad = lambda a: np.concatenate([a, np.zeros((rows - len(a),) + a.shape[1:], a.dtype)])
        batch = hosts.host_local_array_to_global_array(
            (pad(x), pad(y), pad(np.ones(len(x), np.float32))), plan.mesh, PartitionSpec("data")
        )
        counter = place(np.asarray(count[0], np.uint32), r)
        count[0] += 1
        model.params, model.state, opt_state[0], value = update(
            model.params, model.state, opt_state[0], counter, *batch, masks
        )
        return value.addressable_data(0)

    return step
