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

from sdk_core import BuildRequest, DeviceInfo, StepRequest

from ._layers import build as build_cells
from ._layers import canonical_names
from ._optim import core_rule, native_sgd

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
        ms.set_context(mode=ms.PYNATIVE_MODE)
        ms.set_device(target, device.index)
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


class MsModel:
    def __init__(self, request: BuildRequest) -> None:
        if request.dtype != "float32":
            raise ValueError("this plugin builds float32 networks only")
        use_device(request.device)
        ms.set_seed(request.seed)
        self.spec = request.spec
        self.net = build_cells(request.spec)
        self.params = canonical_names(self.net)
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
    return ops.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def mse(out, y):
    return ((out - y) ** 2).mean()


def train_step(request: StepRequest) -> Callable[[np.ndarray, np.ndarray], Tensor]:
    model: MsModel = request.model
    net, o = model.net, request.optimizer
    params = net.trainable_params()
    loss_of = cross_entropy if request.loss == "cross_entropy" else mse

    def forward(x, y):  # MindSpore's graph parser wants functions, not inline lambdas
        return loss_of(net(x), y)

    grad_fn = ms.value_and_grad(forward, None, params)
    native = native_sgd(o, params)
    apply_rule = core_rule(o, params) if native is None else None

    y_dtype = np.int32 if request.loss == "cross_entropy" else np.float32

    if native is not None:  # MindSpore's SGD: the graph takes the batch only

        @ms.jit
        def update_native(x, y):
            loss, grads = grad_fn(x, y)
            native(grads)
            return loss

        def step_native(x: np.ndarray, y: np.ndarray) -> Tensor:
            if not net.training:
                net.set_train(True)
            return update_native(model.tensor(x), Tensor(np.ascontiguousarray(y, y_dtype)))

        return step_native

    @ms.jit
    def update(x, y, scalars):
        loss, grads = grad_fn(x, y)
        apply_rule(grads, scalars[0], scalars[1], scalars[2])
        return loss

    count = [0]
    # learning rate and Adam's bias corrections, one small tensor per step; the same tensor
    # every step when none of them changes
    varying = not o.schedule.is_constant or o.name in ("adam", "adamw")
    fixed = Tensor(np.array([o.lr, 1.0, 1.0], np.float32))

    def step(x: np.ndarray, y: np.ndarray) -> Tensor:
        t = count[0]
        count[0] += 1
        if not net.training:
            net.set_train(True)
        scalars = (
            fixed
            if not varying
            else Tensor(np.array([o.lr_at(t), 1 - o.beta1 ** (t + 1), 1 - o.beta2 ** (t + 1)], np.float32))
        )
        return update(model.tensor(x), Tensor(np.ascontiguousarray(y, y_dtype)), scalars)

    return step


def predict(model: MsModel) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        if model.net.training:
            model.net.set_train(False)
        return model.net(model.tensor(x)).asnumpy()

    return run


build = MsModel  # the FrameworkHooks runtime contract: build(request) -> model
