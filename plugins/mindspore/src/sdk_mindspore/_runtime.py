"""Device target, weights conversion, the value_and_grad + jit training step and predict.

The optimizer update (``_optim``) runs inside the same jit-compiled graph as the forward and
backward passes; the learning rate of each step comes from the core's schedule.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

from sdk_core import BuildRequest, DeviceInfo, NotAvailableError, StepRequest
from sdk_core.model.optim import OptimizerState
from sdk_core.plugins.requests import DecodeRequest, DistributedRequest

from ._layers import build as build_cells
from ._layers import canonical_names
from ._optim import canonical_slot, core_rule, native_sgd

TARGETS = {"cpu": "CPU", "cuda": "GPU", "npu": "Ascend"}
_target: list[str] = []


def use_device(device: DeviceInfo) -> None:
    """Set MindSpore's process-wide device target once; a second, different one is refused."""
    target = TARGETS[device.kind]
    if _target and _target[0] != target:
        raise RuntimeError(
            f"MindSpore runs one device target per process: this one uses "
            f"{_target[0]}, so {device.id} ({target}) needs a new process"
        )
    if not _target:
        if target == "CPU":
            # MindSpore's host pipeline threads (frontend queue, kernel threads) wait for work
            # by spinning on sched_yield; on a CPU target they take the cores the kernels need,
            # and a step stalls for whole scheduler ticks (LeNet-5: 170-220 ms a step, 41 ms
            # run blocking). Read when the pipeline first runs; a user's own setting wins.
            os.environ.setdefault("MS_DEV_HOST_BLOCKING_RUN", "1")
        ms.set_context(mode=ms.PYNATIVE_MODE)
        try:
            ms.set_device(target, device.index)
        except RuntimeError as error:  # the caller ran MindSpore first: its runtime is up already
            running = ms.get_context("device_target"), ms.get_context("device_id")
            if running[0] != target or (target != "CPU" and running[1] != device.index):
                raise NotAvailableError(
                    f"MindSpore's runtime already runs on {running[0]}:{running[1]} in this process "
                    f"(started before the stack was built), so {device.id} needs a new process"
                ) from error
        _target.append(target)
        _first_reshape()


def _first_reshape() -> None:
    """MindSpore 2.10's first reshape under NumPy 2 fails once: a helper module built against
    NumPy 1 probes NumPy's C API, prints an ImportError and leaves an error set; every later
    call works. Take that first failure here, with its noise kept off stderr."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with contextlib.suppress(SystemError):
                Tensor(np.ones((2, 2), np.float32)).reshape(-1, 2)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_DEPTH = [1000]  # MindSpore's default limit on the depth of calls it compiles


def _deepen(depth: int) -> None:
    """Raise MindSpore's process-wide compile depth limit to ``depth``, never lower it."""
    if depth > _DEPTH[0]:
        ms.set_recursion_limit(depth)
        _DEPTH[0] = depth


class MsModel:
    def __init__(self, request: BuildRequest) -> None:
        if request.dtype != "float32":
            raise ValueError("this plugin builds float32 networks only")
        use_device(request.device)
        ms.set_seed(request.seed)
        self.spec = request.spec
        if request.spec.is_graph:  # the jit step unrolls the nodes and the optimizer's weights
            _deepen(25 * len(request.spec.layers))  # ResNet-50 (174 nodes) compiles at 1,800
        self.net = build_cells(request.spec, unfold=TARGETS[request.device.kind] == "CPU")
        self.params = canonical_names(self.net, request.spec)
        self.tokens = request.spec.input_dtype == "int64"

    def tensor(self, x: np.ndarray) -> Tensor:
        return Tensor(np.ascontiguousarray(x, np.int32 if self.tokens else np.float32))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: (p.asnumpy().T if t else p.asnumpy()).copy() for name, (p, t) in self.params.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, value in weights.items():
            param, transposed = self.params[name]
            param.set_data(Tensor(np.ascontiguousarray(value.T if transposed else value, np.float32)))


def cross_entropy(out, y):
    if out.ndim == 2:  # (batch, classes) as it is: a reshape is one more kernel launch each way
        return ops.cross_entropy(out, y)
    return ops.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def mse(out, y):
    return ((out - y) ** 2).mean()


def train_step(request: StepRequest) -> Step:
    model: MsModel = request.model
    net, o = model.net, request.optimizer
    params = net.trainable_params()
    loss_of = cross_entropy if request.loss == "cross_entropy" else mse

    def forward(x, y):  # MindSpore's graph parser wants functions, not inline lambdas
        return loss_of(net(x), y)

    grad_fn = ms.value_and_grad(forward, None, params)
    if request.accumulate > 1:
        grad_fn = _accumulated(grad_fn, request.accumulate)
    if request.world is not None and request.world.size > 1:
        from . import _parallel

        grad_fn = _parallel.global_gradients(grad_fn)
    native = native_sgd(o, params)
    step = Step(model, request, params, native)
    masked, masks = _masks(model, request.masks or {})

    def apply_masks():  # pruned weights stay exactly zero, inside the compiled graph
        for p, m in zip(masked, masks):  # noqa: B905 (MindSpore graphs know no strict=)
            ops.assign(p, p * m)

    if native is not None:  # MindSpore's SGD: the graph takes the batch only

        @ms.jit
        def update_native(x, y):
            loss, grads = grad_fn(x, y)
            native(grads)
            apply_masks()
            return loss

        step.run = lambda x, y, scalars: update_native(x, y)
        return step

    apply_rule, step.slots = core_rule(o, params)

    @ms.jit
    def update(x, y, scalars):
        loss, grads = grad_fn(x, y)
        apply_rule(grads, scalars[0], scalars[1], scalars[2])
        apply_masks()
        return loss

    step.run = update
    return step


def _accumulated(grad_fn: Callable, k: int) -> Callable:
    """``grad_fn`` over ``k`` micro-batches one after another inside the compiled graph, the
    losses and gradients summed by each micro-batch's share of the batch."""

    def run(x, y):
        n = x.shape[0]
        size = (n + k - 1) // k
        loss, grads = grad_fn(x[:size], y[:size])
        share = min(size, n) / n
        loss, grads = loss * share, tuple(g * share for g in grads)
        for s in range(size, n, size):
            part = min(size, n - s) / n
            more_loss, more = grad_fn(x[s : s + size], y[s : s + size])
            loss = loss + more_loss * part
            grads = tuple(a + b * part for a, b in zip(grads, more))  # noqa: B905
        return loss, grads

    return run


def _masks(model: MsModel, masks: Mapping[str, np.ndarray]) -> tuple[list, list]:
    """The masked Parameters and their masks in the Parameters' layout."""
    pairs = [model.params[n] for n in masks]
    values = [Tensor(np.ascontiguousarray(m.T if t else m, np.float32)) for (_, t), m in zip(pairs, masks.values())]  # noqa: B905
    return [p for p, _ in pairs], values


class Step:
    """``step(x, y) -> loss``: the jit-compiled update, fed the step's learning rate and Adam's
    bias corrections; ``get_state`` / ``set_state`` for checkpoints."""

    def __init__(self, model: MsModel, request: StepRequest, params: list, native) -> None:
        self.model, self.o, self.native = model, request.optimizer, native
        self.run: Callable[..., Tensor] | None = None
        self.slots: dict[str, list] = {}
        self.count = 0
        self.y_dtype = np.int32 if request.loss == "cross_entropy" else np.float32
        # learning rate and Adam's bias corrections, one small tensor per step; the same tensor
        # every step when none of them changes
        self.varying = not self.o.schedule.is_constant or self.o.name in ("adam", "adamw")
        self.fixed = Tensor(np.array([self.o.lr, 1.0, 1.0], np.float32))
        index = {id(p): i for i, p in enumerate(params)}
        trainable = {p.name for p in model.spec.layout() if p.trainable}
        self.where = {n: (index[id(p)], t) for n, (p, t) in model.params.items() if n in trainable}

    def __call__(self, x: np.ndarray, y: np.ndarray) -> Tensor:
        t, o = self.count, self.o
        self.count += 1
        if not self.model.net.training:
            self.model.net.set_train(True)
        scalars = (
            self.fixed
            if not self.varying
            else Tensor(np.array([o.lr_at(t), 1 - o.beta1 ** (t + 1), 1 - o.beta2 ** (t + 1)], np.float32))
        )
        assert self.run is not None
        return self.run(self.model.tensor(x), Tensor(np.ascontiguousarray(y, self.y_dtype)), scalars)

    def _slot_parameters(self) -> dict[str, list]:
        if self.native is not None:
            return {"momentum": list(self.native.accum)} if self.o.momentum else {}
        return {canonical_slot(mine, self.o): values for mine, values in self.slots.items()}

    def get_state(self) -> OptimizerState:
        slots = {
            slot: {n: (values[i].asnumpy().T if t else values[i].asnumpy()).copy() for n, (i, t) in self.where.items()}
            for slot, values in self._slot_parameters().items()
        }
        return OptimizerState(self.count, slots)

    def set_state(self, state: OptimizerState) -> None:
        for slot, values in self._slot_parameters().items():
            for n, (i, t) in self.where.items():
                value = state.slots[slot][n]
                values[i].set_data(Tensor(np.ascontiguousarray(value.T if t else value, np.float32)))
        if self.native is not None and self.o.momentum:  # MindSpore's SGD flags its first step in `stat`
            for flag in self.native.stat:
                flag.set_data(Tensor(np.full(flag.shape, 0.0 if state.step else 1.0, np.float32)))
        self.count = state.step


def init_distributed(request: DistributedRequest) -> None:
    """MindSpore's dynamic cluster, on the device the stack already set."""
    from . import _parallel

    use_device(request.device)
    _parallel.join(request.world)


def all_reduce(values: np.ndarray) -> np.ndarray:
    from . import _parallel

    if not _parallel._JOINED:
        raise NotAvailableError("this MindSpore process joined no data-parallel job")
    return _parallel.all_reduce(values)


def predict(model: MsModel) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        if model.net.training:
            model.net.set_train(False)
        return model.net(model.tensor(x)).asnumpy()

    return run


build = MsModel  # the FrameworkHooks runtime contract: build(request) -> model


def decoder(request: DecodeRequest):
    """The key/value-cache decoder (``_decode``; the ``generate`` capability)."""
    from ._decode import Decoder

    return Decoder(request)
