"""The NumPy model (canonical weights in a dict, one op per layer), its training step and predict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sdk_core import BuildRequest, ModelSpec, Optimizer, StepRequest
from sdk_core.model.optim import OptimizerState

from ._layers import LOSSES, make_op
from ._optim import Updater


class NumpyModel:
    """A sequential model whose ``params`` are the canonical weights themselves."""

    def __init__(self, spec: ModelSpec, dtype: str = "float32", seed: int = 0) -> None:
        self.spec, self.dtype = spec, np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        # zeros until the core sets the canonical weights (initial or loaded): no second init
        self.params: dict[str, np.ndarray] = {p.name: np.zeros(p.shape, self.dtype) for p in spec.layout()}
        self.ops = [make_op(i, layer, self.rng) for i, layer in enumerate(spec.layers)]
        self.ops[0].input_grad = False
        self.trainable = [p.name for p in spec.layout() if p.trainable]

    def _input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x.astype(np.int64, copy=False) if self.spec.input_dtype == "int64" else x.astype(self.dtype, copy=False)

    def forward(self, x: Any, training: bool = False) -> np.ndarray:
        h = self._input(x)
        for op in self.ops:
            h = op.forward(self.params, h, training)
        return h

    def backward(self, dout: np.ndarray) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        d = dout
        for op in reversed(self.ops):
            d = op.backward(self.params, grads, d)
        return grads

    def loss_and_grads(self, x: Any, y: Any, loss: str) -> tuple[float, dict[str, np.ndarray]]:
        out = self.forward(x, training=True)
        value, dout = LOSSES[loss](out, np.asarray(y))
        return float(value), self.backward(dout)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.params.update({k: np.array(v, dtype=self.dtype) for k, v in weights.items()})

    def train_step(
        self, loss: str, optimizer: Optimizer, masks: Mapping[str, np.ndarray] | None = None, accumulate: int = 1
    ) -> Step:
        return Step(self, loss, Updater(optimizer, self.trainable), masks, accumulate)


class Step:
    """``step(x, y) -> loss``: one update; ``get_state`` / ``set_state`` for checkpoints."""

    def __init__(
        self,
        model: NumpyModel,
        loss: str,
        updater: Updater,
        masks: Mapping[str, np.ndarray] | None = None,
        accumulate: int = 1,
    ) -> None:
        self.model, self.loss, self.updater, self.accumulate = model, loss, updater, accumulate
        self.masks = {n: np.asarray(m, model.dtype) for n, m in (masks or {}).items()}

    def _accumulated(self, x: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """Micro-batches one after the other, their gradients summed by share of the batch."""
        n = len(x)
        size = -(-n // self.accumulate)
        value, grads = 0.0, dict[str, np.ndarray]()
        for s in range(0, n, size):
            part, share = slice(s, s + size), min(size, n - s) / n
            v, g = self.model.loss_and_grads(x[part], y[part], self.loss)
            value += v * share
            for name, grad in g.items():
                grads[name] = grads[name] + grad * share if name in grads else grad * share
        return value, grads

    def __call__(self, x: Any, y: Any) -> float:
        if self.accumulate > 1:
            value, grads = self._accumulated(x, y)
        else:
            value, grads = self.model.loss_and_grads(x, y, self.loss)
        params = self.model.params
        self.updater(params, grads)
        for name, mask in self.masks.items():  # pruned weights stay exactly zero
            params[name] *= mask
        return value

    def get_state(self) -> OptimizerState:
        return self.updater.get_state(self.model.params)

    def set_state(self, state: OptimizerState) -> None:
        self.updater.set_state(state)


def build(request: BuildRequest) -> NumpyModel:
    return NumpyModel(request.spec, request.dtype, request.seed)


def train_step(request: StepRequest) -> Step:
    return request.model.train_step(request.loss, request.optimizer, request.masks, request.accumulate)


def predict(model: NumpyModel) -> Callable[[Any], np.ndarray]:
    return model.forward
