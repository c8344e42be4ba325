"""The JAX model holder and the jit-compiled step and predict functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdk_core import BuildRequest, DeviceInfo, StepRequest
from sdk_core.model.optim import OptimizerState

from ._layers import model_fn
from ._optim import get_state, make_optimizer, set_state

PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "tpu": "tpu"}


def jax_device(device: DeviceInfo) -> jax.Device:
    return jax.devices(PLATFORMS[device.kind])[device.index]


class JaxModel:
    """Canonical weights as device arrays (trainable ``params``, batchnorm ``state``), the
    pure forward function and a PRNG key for dropout. Steps replace the arrays in place."""

    def __init__(self, request: BuildRequest) -> None:
        if request.dtype != "float32":
            raise ValueError(
                "float64 needs JAX's process-wide jax_enable_x64 switch, which this plugin does not flip; use float32"
            )
        self.spec, self.device = request.spec, jax_device(request.device)
        self.apply = model_fn(request.spec)
        self.trainable = {p.name for p in request.spec.layout() if p.trainable}
        self.params: dict[str, jax.Array] = {}
        self.state: dict[str, jax.Array] = {}
        self.key = jax.device_put(jax.random.key(request.seed), self.device)

    def put(self, x: np.ndarray) -> jax.Array:
        return jax.device_put(x, self.device)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, value in weights.items():
            target = self.params if name in self.trainable else self.state
            target[name] = self.put(np.asarray(value, np.float32))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in {**self.params, **self.state}.items()}


def loss_fn(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    if name == "cross_entropy":
        return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return lambda out, y: jnp.mean((out - y) ** 2)


def _has_dropout(spec) -> bool:
    return any(getattr(l, "rate", 0) or getattr(l, "dropout", 0) for l in spec.layers)


def train_step(request: StepRequest) -> Step:
    """One jit-compiled update. Batches go to jit as numpy arrays: jit moves them to the device
    the weights live on, which is cheaper than an explicit ``device_put`` per batch. The PRNG
    key is threaded through the step only when the spec has dropout."""
    model: JaxModel = request.model
    tx = make_optimizer(request.optimizer)
    loss_of = loss_fn(request.loss)
    opt_state = [tx.init(model.params)]

    # pruning masks, applied inside the compiled update (an argument, not a baked-in constant)
    masks = {n: model.put(np.asarray(m, np.float32)) for n, m in (request.masks or {}).items()}

    def core(params, state, opt_state, key, x, y, masks):
        def objective(p):
            out, new_state = model.apply(p, state, x, True, key)
            return loss_of(out, y), new_state

        (loss, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        params = {n: p * masks[n] if n in masks else p for n, p in params.items()}
        return params, state, opt_state, loss

    if _has_dropout(request.spec):

        @partial(jax.jit, donate_argnums=(0, 1, 2, 3))
        def update(params, state, opt_state, key, x, y, masks):
            key, sub = jax.random.split(key)
            return (*core(params, state, opt_state, sub, x, y, masks), key)

        def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
            model.params, model.state, opt_state[0], loss, model.key = update(
                model.params, model.state, opt_state[0], model.key, x, y, masks
            )
            return loss
    else:
        key = model.key
        update = jax.jit(lambda p, s, o, x, y, m: core(p, s, o, key, x, y, m), donate_argnums=(0, 1, 2))

        def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
            model.params, model.state, opt_state[0], loss = update(model.params, model.state, opt_state[0], x, y, masks)
            return loss

    return Step(step, opt_state, request.optimizer, model.device)


class Step:
    """``step(x, y) -> loss`` (the jit-compiled update); ``get_state`` / ``set_state`` read
    and replace the optax state in the canonical layout, for checkpoints."""

    def __init__(self, run: Callable[[np.ndarray, np.ndarray], jax.Array], opt_state: list, optimizer, device) -> None:
        self.run, self.opt_state, self.optimizer, self.device = run, opt_state, optimizer, device
        self.count = 0  # updates done: not every optax state counts them (sgd, adagrad)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> jax.Array:
        self.count += 1
        return self.run(x, y)

    def get_state(self) -> OptimizerState:
        state = get_state(self.opt_state[0], self.optimizer)
        return OptimizerState(self.count, state.slots)

    def set_state(self, state: OptimizerState) -> None:
        self.opt_state[0] = set_state(self.opt_state[0], state, self.optimizer, self.device)
        self.count = state.step


def predict(model: JaxModel) -> Callable[[np.ndarray], np.ndarray]:
    forward = jax.jit(lambda params, state, x: model.apply(params, state, x, False, jax.random.key(0))[0])
    return lambda x: np.asarray(forward(model.params, model.state, x))


build = JaxModel  # the FrameworkHooks runtime contract: build(request) -> model
