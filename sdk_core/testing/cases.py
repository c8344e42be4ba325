"""The specs, optimizers and losses the conformance suite runs, each tagged with the features
(``layer:<type>``, ``optimizer:<name>``, ``schedule:<kind>``, ``loss:<name>``) it needs."""

from __future__ import annotations

import attrs
import numpy as np

from ..model import spec as S
from ..model.optim import LOSSES, OPTIMIZERS, SCHEDULES, Optimizer, Schedule


@attrs.frozen
class LayerCase:
    spec: S.ModelSpec

    @property
    def features(self) -> set[str]:
        return {f"layer:{l.type}" for l in self.spec.layers}


def _spec(shape, layers, dtype="float32") -> S.ModelSpec:
    return S.ModelSpec(input_shape=shape, layers=layers, input_dtype=dtype)


LAYER_CASES: dict[str, LayerCase] = {
    name: LayerCase(spec)
    for name, spec in {
        "dense": _spec((5,), [S.Dense(4)]),
        "dense_on_sequences": _spec((3, 5), [S.Dense(4, bias=False)]),
        "conv2d": _spec((2, 7, 7), [S.Conv2D(3, 3, stride=2, padding=1)]),
        "conv2d_no_bias": _spec((2, 5, 5), [S.Conv2D(2, 2, bias=False)]),
        "max_pool2d": _spec((2, 4, 4), [S.MaxPool2D(2)]),
        "max_pool2d_overlapping": _spec((2, 5, 5), [S.MaxPool2D(3, stride=1)]),
        "avg_pool2d": _spec((2, 6, 6), [S.AvgPool2D(2)]),
        "flatten": _spec((2, 3, 3), [S.Flatten(), S.Dense(3)]),
        "relu": _spec((6,), [S.Dense(6), S.ReLU()]),
        "gelu": _spec((6,), [S.Dense(6), S.GELU()]),
        "tanh": _spec((6,), [S.Dense(6), S.Tanh()]),
        "sigmoid": _spec((6,), [S.Dense(6), S.Sigmoid()]),
        "softmax": _spec((6,), [S.Dense(6), S.Softmax()]),
        "dropout": _spec((6,), [S.Dense(6), S.Dropout(0.5)]),
        "batchnorm_vectors": _spec((4,), [S.BatchNorm(momentum=0.2)]),
        "batchnorm_images": _spec((3, 4, 4), [S.BatchNorm()]),
        "layernorm": _spec((3, 6), [S.LayerNorm(eps=1e-3)]),
        "embedding": _spec((5,), [S.Embedding(7, 4)], "int64"),
        "embedding_positions": _spec((5,), [S.Embedding(7, 4, max_len=6)], "int64"),
        "attention_causal": _spec((4, 8), [S.Attention(2)]),
        "attention_full": _spec((4, 6), [S.Attention(3, causal=False)]),
        "transformer_block": _spec((4, 8), [S.TransformerBlock(2, mlp_ratio=2)]),
        "lenet_like": _spec(
            (1, 12, 12),
            [
                S.Conv2D(4, 3),
                S.ReLU(),
                S.MaxPool2D(2),
                S.Conv2D(6, 3),
                S.BatchNorm(),
                S.Tanh(),
                S.Flatten(),
                S.Dense(8),
                S.ReLU(),
                S.Dense(3),
            ],
        ),
        "gpt": _spec((6,), [S.Embedding(9, 8, max_len=6), S.TransformerBlock(2), S.LayerNorm(), S.Dense(9)], "int64"),
    }.items()
}


@attrs.frozen
class StepCase:
    optimizer: Optimizer
    loss: str = "cross_entropy"
    steps: int = 3

    @property
    def features(self) -> set[str]:
        out = {f"optimizer:{self.optimizer.name}", f"loss:{self.loss}"}
        if self.optimizer.schedule.kind != "constant" or self.optimizer.schedule.warmup_steps:
            out.add(f"schedule:{self.optimizer.schedule.kind}")
        return out


STEP_SPEC = _spec((5,), [S.Dense(6), S.Tanh(), S.Dense(4)])

STEP_CASES: dict[str, StepCase] = {
    "sgd": StepCase(Optimizer("sgd", lr=0.1)),
    "sgd_momentum": StepCase(Optimizer("sgd", lr=0.1, momentum=0.9)),
    "sgd_nesterov": StepCase(Optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": StepCase(Optimizer("sgd", lr=0.1, momentum=0.5, weight_decay=0.05)),
    "adagrad": StepCase(Optimizer("adagrad", lr=0.05)),
    "adagrad_weight_decay": StepCase(Optimizer("adagrad", lr=0.05, weight_decay=0.05)),
    "rmsprop": StepCase(Optimizer("rmsprop", lr=0.01)),
    "rmsprop_weight_decay": StepCase(Optimizer("rmsprop", lr=0.01, rho=0.9, weight_decay=0.05)),
    "adam": StepCase(Optimizer("adam", lr=0.01)),
    "adam_weight_decay": StepCase(Optimizer("adam", lr=0.01, weight_decay=0.05)),
    "adamw": StepCase(Optimizer("adamw", lr=0.01, weight_decay=0.1)),
    "mse": StepCase(Optimizer("sgd", lr=0.1), loss="mse"),
    "schedule_step": StepCase(Optimizer("sgd", lr=0.1, schedule=Schedule("step", step_size=1, gamma=0.5)), steps=4),
    "schedule_exponential": StepCase(Optimizer("sgd", lr=0.01, schedule=Schedule("exponential", gamma=2.0)), steps=4),
    "schedule_cosine_warmup": StepCase(
        Optimizer("adam", lr=0.01, schedule=Schedule("cosine", warmup_steps=2, total_steps=4, min_lr=0.001)), steps=5
    ),
}

ALL_FEATURES = (
    {f"layer:{t}" for t in S.LAYER_TYPES}
    | {f"optimizer:{o}" for o in OPTIMIZERS}
    | {f"loss:{l}" for l in LOSSES}
    | {f"schedule:{s}" for s in SCHEDULES if s != "constant"}
    | {"dtype:float64", "training:masks", "training:accumulate", "training:remat", "precision:bf16", "precision:fp16"}
)


def random_weights(spec: S.ModelSpec, seed: int = 0, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Weights far from their initial values (running variances stay positive)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in spec.layout():
        value = rng.normal(0.0, 0.5, p.shape)
        if p.name.endswith("running_var"):
            value = np.abs(value) + 0.5
        out[p.name] = value.astype(dtype)
    return out


def inputs(spec: S.ModelSpec, n: int = 4, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if spec.input_dtype == "int64":
        return rng.integers(0, spec.layers[0].vocab_size, (n,) + spec.input_shape)  # type: ignore[attr-defined]  # int64 specs start with an embedding
    return rng.normal(0.0, 1.0, (n,) + spec.input_shape).astype(np.float32)


def targets(spec: S.ModelSpec, loss: str, n: int = 4, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = spec.output_shape
    if loss == "cross_entropy":
        return rng.integers(0, out[-1], (n,) + out[:-1])
    return rng.normal(0.0, 1.0, (n,) + out).astype(np.float32)
