"""The JAX model holder and the jit-compiled step and predict functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdk_core import BuildRequest, DeviceInfo, NotAvailableError, StepRequest
from sdk_core.model.optim import OptimizerState
from sdk_core.plugins.requests import DecodeRequest, DistributedRequest

from . import _parallel, _sharded
from ._layers import model_fn
from ._optim import get_state, make_optimizer, set_state

PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "tpu": "tpu"}


_parallel.start_from_environ()  # a worker of a data-parallel job joins it before JAX computes


def jax_device(device: DeviceInfo) -> jax.Device:
    return jax.local_devices(backend=PLATFORMS[device.kind])[device.index]


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
        self.placement: dict[str, jax.sharding.Sharding] = {}  # a sharded step's layout of each weight
        self._local: tuple = (None, None, None)

    def put(self, x: np.ndarray) -> jax.Array:
        return jax.device_put(x, self.device)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, value in weights.items():
            target = self.params if name in self.trainable else self.state
            value = np.asarray(value, np.float32)
            target[name] = _parallel.place(value, self.placement[name]) if name in self.placement else self.put(value)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Whole arrays, gathered from every process when a sharded step spreads them (then every
        process calls this together)."""
        return {k: _parallel.full(v) for k, v in {**self.params, **self.state}.items()}

    def reshard(self, params: Mapping[str, jax.sharding.Sharding], other: jax.sharding.Sharding) -> None:
        """Lay the weights out as a sharded step keeps them: trainable ones as ``params``, the rest as ``other``."""
        self.placement = {n: params[n] if n in self.trainable else other for n in {**self.params, **self.state}}
        self.set_weights(self.get_weights())

    def local(self) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        """The weights as arrays of this process, for inference: gathered (together by every
        process, once after each step) when a sharded step spreads them across processes."""
        arrays = (self.params, self.state)
        if all(a.is_fully_addressable for t in arrays for a in t.values()):
            return arrays
        if self._local[0] is not self.params or self._local[1] is not self.state:
            gather = lambda t: {n: self.put(_parallel.full(a)) for n, a in t.items()}
            self._local = (self.params, self.state, (gather(self.params), gather(self.state)))
        return self._local[2]


def loss_fn(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    if name == "cross_entropy":
        return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return lambda out, y: jnp.mean((out - y) ** 2)


def _has_dropout(spec) -> bool:
    return any(getattr(l, "rate", 0) or getattr(l, "dropout", 0) for l in spec.layers)


LOW = {"bf16": jnp.bfloat16, "fp16": jnp.float16}
SCALE_GROWTH = 2000  # fp16: steps without overflow before the loss scale doubles


def _scaler(precision: str) -> dict[str, jax.Array]:
    """Dynamic loss scaling state for fp16 (empty otherwise): scale, good steps, skipped."""
    if precision != "fp16":
        return {}
    return {"scale": jnp.float32(2.0**16), "good": jnp.int32(0), "skipped": jnp.int32(0)}


def train_step(request: StepRequest) -> Step:
    """One jit-compiled update. Batches go to jit as numpy arrays: jit moves them to the device
    the weights live on, which is cheaper than an explicit ``device_put`` per batch. The PRNG
    key is threaded through the step only when the spec has dropout.

    Gradient accumulation runs the micro-batches one after another inside the compiled step;
    mixed precision casts the float32 master weights and inputs to bf16/fp16 for the forward
    and backward passes (the dtype policy), fp16 with dynamic loss scaling (an overflowing
    update is skipped inside the step, and counted there: no host synchronisation)."""
    model: JaxModel = request.model
    tx = make_optimizer(request.optimizer)
    loss_of = loss_fn(request.loss)
    opt_state = [tx.init(model.params)]
    apply = model_fn(request.spec, request.remat) if request.remat else model.apply
    low, k, fp16 = LOW.get(request.precision), request.accumulate, request.precision == "fp16"
    cast = (
        (lambda t: jax.tree.map(lambda a: a.astype(low) if jnp.issubdtype(a.dtype, jnp.floating) else a, t))
        if low
        else (lambda t: t)
    )
    scaler = [_scaler(request.precision)]

    # pruning masks, applied inside the compiled update (an argument, not a baked-in constant)
    masks = {n: model.put(np.asarray(m, np.float32)) for n, m in (request.masks or {}).items()}
    if request.zero or request.tensor > 1:
        if low or k > 1 or request.remat:
            raise NotAvailableError("sharded JAX steps run in float32 without accumulation or checkpointing here")
        if request.world is not None:
            _parallel.check_joined(request.world.size)
        run = _sharded.make_step(model, apply, tx, request.loss, masks, opt_state, request.zero, request.tensor)
        return Step(run, opt_state, request.optimizer, None, scaler)
    if request.world is not None and request.world.size > 1:
        if low or k > 1 or request.remat:
            raise NotAvailableError("data-parallel JAX steps run in float32 without accumulation or checkpointing here")
        _parallel.check_joined(request.world.size)
        run = _parallel.make_step(model, apply, tx, request.loss, masks, opt_state)
        return Step(run, opt_state, request.optimizer, model.device, scaler)

    def grads_of(params, state, key, x, y, scale):
        n = x.shape[0]
        size = -(-n // k)
        grads, loss = None, jnp.float32(0.0)
        for j, s in enumerate(range(0, n, size)):
            xb, yb, share = x[s : s + size], y[s : s + size], min(size, n - s) / n
            sub = key if k == 1 else jax.random.fold_in(key, j)

            def objective(p, state=state, xb=xb, yb=yb, share=share, sub=sub):
                out, new_state = apply(cast(p), state, cast(xb), True, sub)
                value = loss_of(out.astype(jnp.float32), yb)
                return value * share * scale, (value, new_state)

            (_, (value, state)), g = jax.value_and_grad(objective, has_aux=True)(params)
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
            loss = loss + value * share
        return grads, state, loss

    def core(params, state, opt_state, key, x, y, masks, scaler):
        scale = scaler["scale"] if fp16 else 1.0
        grads, state, loss = grads_of(params, state, key, x, y, scale)
        if fp16:
            grads = jax.tree.map(lambda g: g / scale, grads)
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        new_params = {n: p * masks[n] if n in masks else p for n, p in new_params.items()}
        if not fp16:
            return new_params, state, new_opt, loss, scaler
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        good = jnp.where(finite, scaler["good"] + 1, 0)
        grow = good >= SCALE_GROWTH
        scaler = {
            "scale": jnp.where(finite, jnp.where(grow, scale * 2, scale), scale / 2),
            "good": jnp.where(grow, 0, good),
            "skipped": scaler["skipped"] + jnp.where(finite, 0, 1),
        }
        return keep(new_params, params), state, keep(new_opt, opt_state), loss, scaler

    if _has_dropout(request.spec):

        @partial(jax.jit, donate_argnums=(0, 1, 2, 3))
        def update(params, state, opt_state, key, x, y, masks, scaler):
            key, sub = jax.random.split(key)
            return (*core(params, state, opt_state, sub, x, y, masks, scaler), key)

        def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
            model.params, model.state, opt_state[0], loss, scaler[0], model.key = update(
                model.params, model.state, opt_state[0], model.key, x, y, masks, scaler[0]
            )
            return loss
    else:
        key = model.key
        update = jax.jit(lambda p, s, o, x, y, m, c: core(p, s, o, key, x, y, m, c), donate_argnums=(0, 1, 2))

        def step(x: np.ndarray, y: np.ndarray) -> jax.Array:
            model.params, model.state, opt_state[0], loss, scaler[0] = update(
                model.params, model.state, opt_state[0], x, y, masks, scaler[0]
            )
            return loss

    return Step(step, opt_state, request.optimizer, model.device, scaler)


class Step:
    """``step(x, y) -> loss`` (the jit-compiled update); ``get_state`` / ``set_state`` read
    and replace the optax state in the canonical layout, for checkpoints."""

    def __init__(
        self, run: Callable[[np.ndarray, np.ndarray], jax.Array], opt_state: list, optimizer, device, scaler: list
    ) -> None:
        self.run, self.opt_state, self.optimizer, self.device = run, opt_state, optimizer, device
        self.scaler = scaler
        self.count = 0  # updates done: not every optax state counts them (sgd, adagrad)

    @property
    def skipped(self) -> int:
        """fp16 updates skipped for overflowing gradients (read from the device when asked)."""
        return int(self.scaler[0]["skipped"]) if self.scaler[0] else 0

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
    return lambda x: np.asarray(forward(*model.local(), x))


def init_distributed(request: DistributedRequest) -> None:
    """JAX joined when this module loaded (``_parallel.start_from_environ``); check it did."""
    _parallel.check_joined(request.world.size)


all_reduce = _parallel.all_reduce
build = JaxModel  # the FrameworkHooks runtime contract: build(request) -> model


def decoder(request: DecodeRequest):
    """The key/value-cache decoder (``_decode``; the ``generate`` capability)."""
    from ._decode import Decoder

    return Decoder(request)
