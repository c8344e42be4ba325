"""Devices, weights conversion, the tf.function training step and predict."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import numpy as np

from sdk_core import BuildRequest, DeviceInfo, NotAvailableError, StepRequest
from sdk_core.model.optim import OptimizerState
from sdk_core.plugins.requests import DecodeRequest, DistributedRequest

from . import _parallel
from ._framework import keras, tf
from ._layers import SpecModel, TransformerBlock, variables
from ._optim import get_state, make_optimizer, set_state

_parallel.start_from_environ()  # a worker of a data-parallel job joins it before any operation

KINDS = {"cpu": "CPU", "cuda": "GPU", "tpu": "TPU"}


def device_name(device: DeviceInfo) -> str:
    """The TensorFlow device string for a core device: ``/CPU:0``, ``/GPU:n``, ``/TPU:n``."""
    if device.kind not in KINDS:
        raise NotAvailableError(f"TensorFlow cannot drive {device.id} (kinds: {', '.join(KINDS)})")
    return f"/{KINDS[device.kind]}:{device.index if device.kind != 'cpu' else 0}"


def _connect_tpu() -> None:
    """Initialise the TPU system of this host once (a Cloud TPU VM); TPUs then show as devices."""
    if not tf.config.list_logical_devices("TPU"):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)


def tf_device(device: DeviceInfo) -> str:
    """:func:`device_name`, checked against the devices TensorFlow sees."""
    name = device_name(device)
    kind = KINDS[device.kind]
    if kind == "TPU":
        _connect_tpu()
    seen = [d.name for d in tf.config.list_logical_devices(kind)]
    if not any(s.endswith(f"device:{name[1:]}") for s in seen):
        raise NotAvailableError(
            f"TensorFlow sees no {name[1:]} for device {device.id} (it sees: {', '.join(seen) or f'no {kind}'})"
        )
    return name


class TfModel:
    """The Keras model with its device, dtypes and canonical weight slots."""

    def __init__(self, request: BuildRequest) -> None:
        spec = request.spec
        self.spec, self.device, self.dtype = spec, tf_device(request.device), tf.as_dtype(request.dtype)
        self.in_dtype = tf.int64 if spec.input_dtype == "int64" else self.dtype
        # TPUs run XLA only; on the CPU XLA made these steps no faster and cost seconds to compile
        self.jit = request.device.kind == "tpu"
        with _parallel.scope(), tf.device(self.device):
            self.module = SpecModel(spec, request.dtype, request.seed)
            self.module(tf.zeros((1,) + spec.input_shape, self.in_dtype))  # creates the variables
        self.vars = variables(spec, self.module)
        # inside compiled functions the ops are pinned to the device only where TensorFlow
        # could place them elsewhere: a pin on the only device costs a few us a call
        self.pin = len(tf.config.list_logical_devices()) > 1

    def on_device(self):
        """``tf.device(self.device)`` for tracing, or nothing when it is the only device."""
        return tf.device(self.device) if self.pin else contextlib.nullcontext()

    def signature(self, shape: tuple[int, ...], dtype) -> tf.TensorSpec:
        return tf.TensorSpec((None,) + tuple(shape), dtype)

    def get_weights(self) -> dict[str, np.ndarray]:
        # one ReadVariableOp a variable (var.numpy() adds an Identity: ~3x slower, and fit
        # reads the weights at every epoch); a mirrored variable of a job reads the Keras way
        read = _read if not _parallel.joined() else lambda var: var.numpy()
        out = {}
        for name, (var, perm) in self.vars.items():
            value = read(var)
            out[name] = value.transpose(perm[1]).copy() if perm else value
        return out

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, value in weights.items():
            var, perm = self.vars[name]
            var.assign(value.transpose(perm[0]) if perm else value)


def _read(var) -> np.ndarray:
    inner = var.value  # the tf.Variable under Keras' (its TensorFlow dtype takes the fast path)
    if not isinstance(inner, tf.Variable):
        return var.numpy()
    return tf.raw_ops.ReadVariableOp(resource=inner.handle, dtype=inner.dtype).numpy()


def loss_fn(name: str):
    if name == "cross_entropy":
        return lambda out, y: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out))
    return lambda out, y: tf.reduce_mean(tf.square(out - y))


POLICIES = {"fp32": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def _layers_of(module) -> list:
    flatten = getattr(module, "_flatten_layers", None)  # Keras 3: every sublayer, the model included
    return list(flatten(include_self=True)) if flatten else [module]


def train_step(request: StepRequest) -> Step:
    """One ``tf.function`` update. Mixed precision sets Keras' ``mixed_bfloat16`` or
    ``mixed_float16`` dtype policy on every layer while the update is traced (float32
    variables, low-precision compute; predict keeps float32), fp16 with Keras'
    ``LossScaleOptimizer``. Gradient accumulation sums the micro-batches' gradients inside the
    update; ``remat`` wraps each transformer block in ``tf.recompute_grad``."""
    model: TfModel = request.model
    module, loss_of = model.module, loss_fn(request.loss)
    weights = module.trainable_variables
    fp16, policy, k = request.precision == "fp16", POLICIES[request.precision], request.accumulate
    with _parallel.scope():  # the optimizer's variables too are mirrored in a job
        inner = make_optimizer(request.optimizer, model.dtype.name)
        optimizer = keras.optimizers.LossScaleOptimizer(inner) if fp16 else inner
    world = request.world if request.world is not None and request.world.size > 1 else None
    if world is None and _parallel.joined():
        raise NotAvailableError(
            "this TensorFlow process is a worker of a data-parallel job: train with strategy='data_parallel'"
        )
    if world is not None and (k != 1 or policy or request.remat):
        raise NotAvailableError(
            "data-parallel tensorflow steps run in float32 without accumulation or checkpointing here"
        )
    with _parallel.scope(), tf.device(model.device):
        optimizer.build(weights)
    y_dtype = tf.int64 if request.loss == "cross_entropy" else model.dtype
    blocks = [b for b in module.blocks if isinstance(b, TransformerBlock)]
    # pruning masks in the variables' layout, applied inside the compiled update
    with tf.device(model.device):
        masked = [
            (model.vars[n][0], tf.constant(m.transpose(model.vars[n][1][0]) if model.vars[n][1] else m, model.dtype))
            for n, m in (request.masks or {}).items()
        ]

    def forward(x, y):
        loss = loss_of(tf.cast(module(x, training=True), model.dtype), y)
        return loss, optimizer.scale_loss(loss) if fp16 else loss

    def micro(x, y):
        n = tf.shape(x)[0]
        size = (n + k - 1) // k
        total, grads = tf.constant(0.0, model.dtype), None
        for j in range(k):
            xb, yb = x[j * size : (j + 1) * size], y[j * size : (j + 1) * size]
            share = tf.cast(tf.shape(xb)[0], model.dtype) / tf.cast(n, model.dtype)
            with tf.GradientTape() as tape:
                loss, scaled = forward(xb, yb)
                loss, scaled = tf.math.multiply_no_nan(loss, share), tf.math.multiply_no_nan(scaled, share)
            g = tape.gradient(scaled, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            g = [tf.convert_to_tensor(t) for t in g]  # an embedding's IndexedSlices, summable
            total, grads = total + loss, g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
        return total, grads

    # traced for the batch size first seen (static shapes let TensorFlow fold the loss mean
    # and its gradient), once more with a free batch axis for any other size
    @tf.function(reduce_retracing=True, jit_compile=model.jit)
    def update(x, y):
        # every layer but the output one, which stays float32 as Keras' mixed-precision guide advises
        last = set(map(id, _layers_of(module.blocks[-1])))
        layers = [layer for layer in _layers_of(module) if id(layer) not in last] if policy else []
        for layer in layers:
            layer.dtype_policy = policy
        for block in blocks:
            block.remat = request.remat
        try:
            with model.on_device():
                if k == 1:
                    with tf.GradientTape() as tape:
                        loss, scaled = forward(x, y)
                    grads = tape.gradient(scaled, weights) if weights else []
                else:
                    loss, grads = micro(x, y)
                if weights:
                    optimizer.apply_gradients(zip(grads, weights, strict=True))
                for var, mask in masked:
                    var.assign(var * mask)
                return loss
        finally:  # the policy shapes this trace only: predict keeps computing in float32
            for layer in layers:
                layer.dtype_policy = model.dtype.name
            for block in blocks:
                block.remat = False

    if world is not None:  # a strategy's function keeps TensorFlow's own dispatch
        job = _data_parallel(model, optimizer, loss_of, masked, world.size)
        x_np, y_np = model.in_dtype.as_numpy_dtype, y_dtype.as_numpy_dtype
        return Step(lambda x, y: job(np.asarray(x, x_np), np.asarray(y, y_np)), model, inner, request.optimizer)
    return Step(Traced(update, (model.in_dtype, y_dtype)), model, inner, request.optimizer, fp16)


class Traced:
    """Calls a ``tf.function``'s traces directly, one per input shape. Its own dispatch
    (binding the arguments, hashing their types, looking the trace up) costs ~0.2 ms a call on
    a cpu: a third of a small model's step. The first shape gets an exact trace (static shapes
    let TensorFlow fold the loss mean); any other shares one with a free batch axis."""

    def __init__(self, function, dtypes: tuple) -> None:
        self.function, self.dtypes, self.traces = function, dtypes, {}
        self.numpy = tuple(d.as_numpy_dtype for d in dtypes)

    def __call__(self, *arrays: np.ndarray) -> tf.Tensor:
        arrays = tuple(np.asarray(a, d) for a, d in zip(arrays, self.numpy, strict=True))
        key = tuple(a.shape for a in arrays)
        trace = self.traces.get(key)
        if trace is None:
            free = bool(self.traces)
            specs = [
                tf.TensorSpec((None,) * free + a.shape[free:], d) for a, d in zip(arrays, self.dtypes, strict=True)
            ]
            trace = self.traces[key] = self.function.get_concrete_function(*specs)
        return trace(*map(tf.constant, arrays))


def _data_parallel(model: TfModel, optimizer, loss_of, masked: list, size: int):
    """The update of one worker's shard under MultiWorkerMirroredStrategy: each worker's loss
    is weighted by its share of the global batch, the optimizer sums the gradients over the
    workers (Keras' all-reduce), so uneven shards still give the global batch's gradient; the
    loss returned is the global batch's."""
    job, module = _parallel.strategy(size), model.module
    weights = module.trainable_variables

    def replica(x, y):
        rows = tf.cast(tf.shape(x)[0], model.dtype)
        share = rows / tf.distribute.get_replica_context().all_reduce("sum", rows)
        with tf.GradientTape() as tape:
            loss = loss_of(module(x, training=True), y) * share
        if weights:
            optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
        return loss

    @tf.function(reduce_retracing=True)
    def update(x, y):
        with tf.device(model.device):
            loss = job.reduce("sum", job.run(replica, args=(x, y)), axis=None)
            for var, mask in masked:  # in the cross-replica context: every worker's copy
                var.assign(var * mask)
            return loss

    return update


class Step:
    """``step(x, y) -> loss`` (the tf.function update); ``get_state`` / ``set_state`` read
    and write the Keras optimizer's variables in the canonical layout, for checkpoints."""

    def __init__(
        self, run: Callable[[np.ndarray, np.ndarray], tf.Tensor], model: TfModel, native, rule, fp16: bool = False
    ) -> None:
        self.run, self.model, self.native, self.rule, self.fp16 = run, model, native, rule, fp16
        trainable = {p.name for p in model.spec.layout() if p.trainable}
        self.params = {name: pair for name, pair in model.vars.items() if name in trainable}
        self.calls = 0

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tf.Tensor:
        self.calls += 1
        return self.run(x, y)

    @property
    def skipped(self) -> int:
        """fp16 updates the loss-scale optimizer skipped (its inner optimizer did not count them)."""
        return self.calls - int(self.native.iterations.numpy()) if self.fp16 else 0

    def get_state(self) -> OptimizerState:
        return get_state(self.native, self.rule, self.params)

    def set_state(self, state: OptimizerState) -> None:
        set_state(self.native, self.rule, self.params, state)


def predict(model: TfModel) -> Callable[[np.ndarray], np.ndarray]:
    @tf.function(input_signature=[model.signature(model.spec.input_shape, model.in_dtype)], jit_compile=model.jit)
    def forward(x):
        with model.on_device():
            return model.module(x, training=False)

    traced = Traced(forward, (model.in_dtype,))
    return lambda x: traced(x).numpy()


build = TfModel  # the FrameworkHooks runtime contract: build(request) -> model


def init_distributed(request: DistributedRequest) -> None:
    """The job was joined when the runtime loaded; check it is the one asked for."""
    _parallel.strategy(request.world.size)


all_reduce = _parallel.all_reduce


def decoder(request: DecodeRequest):
    """The key/value-cache decoder (``_decode``; the ``generate`` capability)."""
    from ._decode import Decoder

    return Decoder(request)
