"""Data-parallel training on JAX's multi-process runtime: ``jax.distributed`` (gloo collectives
on the cpu) and one jit over a mesh of every process's device, the global batch sharded along
it and the weights replicated, so XLA averages the gradients across the processes.

JAX's distributed runtime must start before its first computation, so it starts when this
plugin's runtime loads in a process that a launcher (``sdk launch``, torchrun, srun) made part
of a job. Each rank pads its shard of a global batch to the largest shard with rows of weight
0: the loss is the weighted mean over the global batch, whatever the shards' sizes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils as hosts
from jax.sharding import Mesh, PartitionSpec

from sdk_core import NotAvailableError
from sdk_core.runtime.world import from_environ


def start_from_environ() -> None:
    """Join the job the environment describes, before JAX computes anything."""
    world = from_environ()
    if world.size > 1 and not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)  # gloo announces its connection on standard output, which is for results
        try:
            jax.distributed.initialize(
                coordinator_address=f"{world.address}:{world.coordinator_port}",  # torchrun's store holds port
                num_processes=world.size,
                process_id=world.rank,
                initialization_timeout=int(world.timeout),
            )
            hosts.process_allgather(np.zeros(1, np.float32))  # connect now, while the notice goes to stderr
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def check_joined(size: int) -> None:
    if jax.process_count() != size:
        raise NotAvailableError(
            "JAX's distributed runtime starts before its first computation: run the job through "
            "sdk launch, torchrun or srun, which set the environment before the jax plugin loads"
        )


def all_reduce(values: np.ndarray) -> np.ndarray:
    return np.asarray(hosts.process_allgather(np.asarray(values, np.float64))).reshape(jax.process_count(), -1).sum(0)


def full(a: jax.Array) -> np.ndarray:
    """The whole of ``a`` on this host, gathered from every process when it is sharded across them
    (a collective then: every process calls it for the same arrays)."""
    return np.array(a if a.is_fully_addressable else hosts.process_allgather(a, tiled=True))


def place(value: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """``value`` (the same whole array in every process) laid out as ``sharding``."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: np.asarray(value[index]))


def per_sample(loss: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The loss of each sample (averaged over a sequence's positions)."""
    if loss == "cross_entropy":
        ce = optax.softmax_cross_entropy_with_integer_labels
        return lambda out, y: ce(out, y).reshape(out.shape[0], -1).mean(axis=1)
    return lambda out, y: jnp.square(out - y).reshape(out.shape[0], -1).mean(axis=1)


def make_step(model: Any, apply: Callable, tx: Any, loss: str, masks: dict, opt_state: list) -> Callable:
    """``step(x, y) -> loss`` for this rank's shard ``x``, ``y`` of each global batch."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    everywhere, split = PartitionSpec(), PartitionSpec("data")
    loss_of = per_sample(loss)
    to_global = lambda tree: hosts.host_local_array_to_global_array(tree, mesh, everywhere)
    to_local = lambda tree: jax.tree.map(lambda a: a.addressable_data(0), tree)
    count = [0]

    @jax.jit
    def update(params, state, opt_state, key, x, y, w, masks):
        def objective(p):
            out, new_state = apply(p, state, x, True, key)
            return jnp.sum(loss_of(out, y) * w) / jnp.sum(w), new_state

        (value, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        params = {n: p * masks[n] if n in masks else p for n, p in params.items()}
        return params, state, opt_state, value

    def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
        rows = int(np.max(hosts.process_allgather(np.array([len(x)]))))
        pad = lambda a: np.concatenate([a, np.zeros((rows - len(a),) + a.shape[1:], a.dtype)])
        weight = pad(np.ones(len(x), np.float32))
        batch = hosts.host_local_array_to_global_array((pad(np.asarray(x)), pad(np.asarray(y)), weight), mesh, split)
        key = jax.random.fold_in(model.key, count[0])
        count[0] += 1
        state = to_global((model.params, model.state, opt_state[0], masks))
        params, model_state, new_opt, value = update(state[0], state[1], state[2], key, *batch, state[3])
        model.params, model.state, opt_state[0] = to_local(params), to_local(model_state), to_local(new_opt)
        return value.addressable_data(0)

    return step
