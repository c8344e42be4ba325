"""The NumPy model (canonical weights in a dict, one op per layer), its training step and predict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sdk_core import BuildRequest, ModelSpec, Optimizer, StepRequest
from sdk_core.model.optim import OptimizerState
from sdk_core.model.spec import Op

from . import _parallel
from ._decode import decoder  # noqa: F401  (the sdk_make_decoder hook's runtime function)
from ._layers import LOSSES, make_op
from ._ops import FoldedNode, OpNode
from ._optim import Updater


class NumpyModel:
    """A sequential model whose ``params`` are the canonical weights themselves."""

    def __init__(self, spec: ModelSpec, dtype: str = "float32", seed: int = 0) -> None:
        self.spec, self.dtype = spec, np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        # zeros until the core sets the canonical weights (initial or loaded): no second init
        self.params: dict[str, np.ndarray] = {p.name: np.zeros(p.shape, self.dtype) for p in spec.layout()}
        self.ops = [
            make_op(n, layer, self.rng)
            if not isinstance(layer, Op)
            else OpNode(plan, self.dtype)
            if plan is not None
            else FoldedNode("")
            for n, layer, plan in zip(spec.node_names, spec.layers, spec.plans, strict=True)
        ]
        for op, sources in zip(self.ops, spec.sources, strict=True):
            op.arity = len(sources)
            op.input_grad = sources != (-1,)  # no gradient for the model's input
        self.graph = spec.is_graph
        self.trainable = [p.name for p in spec.layout() if p.trainable]

    def _input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x.astype(np.int64, copy=False) if self.spec.input_dtype == "int64" else x.astype(self.dtype, copy=False)

    def forward(self, x: Any, training: bool = False) -> np.ndarray:
        h = self._input(x)
        if not self.graph:
            for op in self.ops:
                h = op.forward(self.params, h, training)
            return h
        outs: dict[int, Any] = {-1: h}
        for i, (op, sources, done) in enumerate(zip(self.ops, self.spec.sources, self.spec.frees, strict=True)):
            args: Any = [outs[j] for j in sources]  # a merge takes the list, any other op one array
            outs[i] = op.forward(self.params, args if op.arity > 1 else args[0], training)
            for j in done:  # free what no later node reads
                del outs[j]
        return outs[len(self.ops) - 1]

    def backward(self, dout: np.ndarray) -> dict[str, np.ndarray]:
        """The weights' gradients; ``dinput`` is left holding the input's (None when skipped)."""
        grads: dict[str, np.ndarray] = {}
        if not self.graph:
            d: Any = dout
            for op in reversed(self.ops):
                d = op.backward(self.params, grads, d)
            self.dinput = d
            return grads
        # each node's output gradient is the sum over the nodes it feeds
        douts: dict[int, np.ndarray] = {len(self.ops) - 1: dout}
        for i in range(len(self.ops) - 1, -1, -1):
            op, sources = self.ops[i], self.spec.sources[i]
            if i not in douts:  # no gradient reaches it: a folded node, or an integer or bool result
                continue
            d = op.backward(self.params, grads, douts.pop(i))
            for j, dj in zip(sources, d if op.arity > 1 else [d], strict=True):
                if dj is not None:
                    douts[j] = douts[j] + dj if j in douts else dj
        self.dinput = douts.get(-1)  # the input's gradient, where the ops computed it
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
        self,
        loss: str,
        optimizer: Optimizer,
        masks: Mapping[str, np.ndarray] | None = None,
        accumulate: int = 1,
        parallel: bool = False,
    ) -> Step:
        return Step(self, loss, Updater(optimizer, self.trainable), masks, accumulate, parallel)


class Step:
    """``step(x, y) -> loss``: one update; ``get_state`` / ``set_state`` for checkpoints."""

    def __init__(
        self,
        model: NumpyModel,
        loss: str,
        updater: Updater,
        masks: Mapping[str, np.ndarray] | None = None,
        accumulate: int = 1,
        parallel: bool = False,
    ) -> None:
        self.model, self.loss, self.updater, self.accumulate = model, loss, updater, accumulate
        self.parallel = parallel  # a data-parallel step: the gradients are the global batch's
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
        if self.parallel:
            value, grads = _parallel.global_batch(value, grads, len(x))
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
    parallel = request.world is not None and request.world.size > 1
    return request.model.train_step(request.loss, request.optimizer, request.masks, request.accumulate, parallel)


def predict(model: NumpyModel) -> Callable[[Any], np.ndarray]:
    return model.forward


init_distributed, all_reduce = _parallel.init_distributed, _parallel.all_reduce
