"""The JAX model holder, optax optimizers and the jit-compiled step and predict functions."""
from __future__ import annotations

from functools import partial
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdk_core import BuildRequest, DeviceInfo, Optimizer, Schedule, StepRequest

from ._layers import model_fn

PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "tpu": "tpu"}


def jax_device(device: DeviceInfo) -> jax.Device:
    return jax.devices(PLATFORMS[device.kind])[device.index]


class JaxModel:
    """Canonical weights as device arrays (trainable ``params``, batchnorm ``state``), the
    pure forward function and a PRNG key for dropout. Steps replace the arrays in place."""

    def __init__(self, request: BuildRequest) -> None:
        if request.dtype != "float32":
            raise ValueError("float64 needs JAX's process-wide jax_enable_x64 switch, which this "
                             "plugin does not flip; use float32")
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


def schedule_fn(base_lr: float, s: Schedule) -> Callable[[jax.Array], jax.Array]:
    """``Schedule.lr_at`` as an optax schedule (a function of the update count)."""
    def lr(count):
        t = count.astype(jnp.float32)
        after = t - s.warmup_steps
        if s.kind == "step":
            value = base_lr * s.gamma ** jnp.floor(after / s.step_size)
        elif s.kind == "cosine":
            span = s.total_steps - s.warmup_steps
            done = jnp.clip(after, 0, span)
            value = s.min_lr + (base_lr - s.min_lr) * 0.5 * (1 + jnp.cos(jnp.pi * done / span))
        else:
            value = jnp.asarray(base_lr, jnp.float32)
        if s.warmup_steps:
            value = jnp.where(t < s.warmup_steps, base_lr * (t + 1) / s.warmup_steps, value)
        return value
    return lr


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


def loss_fn(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    if name == "cross_entropy":
        return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return lambda out, y: jnp.mean((out - y) ** 2)


def _has_dropout(spec) -> bool:
    return any(getattr(l, "rate", 0) or getattr(l, "dropout", 0) for l in spec.layers)


def train_step(request: StepRequest) -> Callable[[np.ndarray, np.ndarray], jax.Array]:
    """One jit-compiled update. Batches go to jit as numpy arrays: jit moves them to the device
    the weights live on, which is cheaper than an explicit ``device_put`` per batch. The PRNG
    key is threaded through the step only when the spec has dropout."""
    model: JaxModel = request.model
    tx = make_optimizer(request.optimizer)
    loss_of = loss_fn(request.loss)
    opt_state = [tx.init(model.params)]

    def core(params, state, opt_state, key, x, y):
        def objective(p):
            out, new_state = model.apply(p, state, x, True, key)
            return loss_of(out, y), new_state

        (loss, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

    if _has_dropout(request.spec):
        @partial(jax.jit, donate_argnums=(0, 1, 2, 3))
        def update(params, state, opt_state, key, x, y):
            key, sub = jax.random.split(key)
            return (*core(params, state, opt_state, sub, x, y), key)

        def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
            model.params, model.state, opt_state[0], loss, model.key = update(
                model.params, model.state, opt_state[0], model.key, x, y)
            return loss
    else:
        key = model.key
        update = jax.jit(lambda p, s, o, x, y: core(p, s, o, key, x, y), donate_argnums=(0, 1, 2))

        def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
            model.params, model.state, opt_state[0], loss = update(model.params, model.state, opt_state[0], x, y)
            return loss

    return step


def predict(model: JaxModel) -> Callable[[np.ndarray], np.ndarray]:
    forward = jax.jit(lambda params, state, x: model.apply(params, state, x, False, jax.random.key(0))[0])
    return lambda x: np.asarray(forward(model.params, model.state, x))


build = JaxModel  # the FrameworkHooks runtime contract: build(request) -> model
