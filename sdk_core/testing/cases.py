"""The specs, optimizers and losses the conformance suite runs, each tagged with the features
(``layer:<type>``, ``optimizer:<name>``, ``schedule:<kind>``, ``loss:<name>``) it needs."""

from __future__ import annotations

import attrs
import numpy as np

from ..model import spec as S
from ..model.ops import FOLDED, OPS
from ..model.optim import LOSSES, OPTIMIZERS, SCHEDULES, Optimizer, Schedule
from .op_cases import OP_SPECS


@attrs.frozen
class LayerCase:
    spec: S.ModelSpec

    @property
    def features(self) -> set[str]:
        return features_of(self.spec)


def features_of(spec: S.ModelSpec) -> set[str]:
    """The feature ids a spec needs: its layer types, its operators, graph wiring."""
    found = {f"layer:{l.type}" for l in spec.layers} | ({"spec:graph"} if spec.is_graph else set())
    return found | {f"op:{p.op}" for p in spec.plans if p is not None}


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


def random_graph(seed: int, images: bool = True) -> S.ModelSpec:
    """A random DAG of layers every framework has: branches from any earlier node, ``add`` of
    outputs of one shape, ``concat`` along the channels, then one head. Every node is used."""
    rng = np.random.default_rng(seed)
    shape: tuple[int, ...] = (2, 6, 6) if images else (5,)
    nodes: list[S.Node] = []
    shapes = {"input": shape}
    open_ = ["input"]  # outputs no node reads yet

    def add(layer: S.Layer, inputs: list[str]) -> None:
        name = f"n{len(nodes)}"
        nodes.append(S.Node(name, layer, inputs))
        ins = [shapes[i] for i in inputs]
        shapes[name] = layer.merge_shape(ins) if layer.merge else layer.output_shape(ins[0])
        for i in inputs:
            if i in open_:
                open_.remove(i)
        open_.append(name)

    for _ in range(int(rng.integers(4, 8))):
        names = [n for n in shapes if n != "input"] or ["input"]
        src = str(rng.choice(open_ if rng.random() < 0.6 else names))
        width = int(rng.integers(2, 5))
        same = [n for n in shapes if n != src and shapes[n] == shapes[src]]
        pick = rng.random()
        if pick < 0.2 and same:
            add(S.Add(), [src, str(rng.choice(same))])
        elif pick < 0.35 and len(shapes) > 1:
            other = str(rng.choice([n for n in shapes if n != src]))
            add(S.Concat(), [src, other])
        elif images:
            kinds = [S.Conv2D(width, 3, padding="same"), S.Conv2D(width, 1), S.BatchNorm(), S.ReLU(), S.Tanh()]
            add(kinds[int(rng.integers(len(kinds)))], [src])
        else:
            kinds = [S.Dense(width), S.Tanh(), S.ReLU(), S.BatchNorm()]
            add(kinds[int(rng.integers(len(kinds)))], [src])
    if "input" in open_:
        open_.remove("input")
    if len(open_) > 1:
        add(S.Concat(), list(open_))
    if images:
        add(S.GlobalAvgPool(), [open_[0]])
    add(S.Dense(3), [open_[0]])
    return S.ModelSpec.from_nodes(shape, nodes)


def _resnet_block() -> S.ModelSpec:
    return S.ModelSpec.from_nodes(
        (2, 6, 6),
        [
            S.Node("stem", S.Conv2D(4, 3, padding="same", bias=False)),
            S.Node("c1", S.Conv2D(4, 3, stride=2, padding=1, bias=False)),
            S.Node("bn1", S.BatchNorm()),
            S.Node("r1", S.ReLU()),
            S.Node("c2", S.Conv2D(4, 3, padding="same", bias=False)),
            S.Node("bn2", S.BatchNorm()),
            S.Node("proj", S.Conv2D(4, 1, stride=2, bias=False), "stem"),
            S.Node("sum", S.Add(), ["bn2", "proj"]),
            S.Node("r2", S.ReLU()),
            S.Node("pool", S.GlobalAvgPool()),
            S.Node("fc", S.Dense(3)),
        ],
    )


def _encoder_block() -> S.ModelSpec:
    return S.ModelSpec.from_nodes(
        (5,),
        [
            S.Node("embed", S.Embedding(9, 8, max_len=5)),
            S.Node("attn", S.Attention(2, causal=False)),
            S.Node("res1", S.Add(), ["attn", "embed"]),
            S.Node("ln1", S.LayerNorm()),
            S.Node("fc1", S.Dense(16)),
            S.Node("act", S.GELU()),
            S.Node("fc2", S.Dense(8)),
            S.Node("res2", S.Add(), ["fc2", "ln1"]),
            S.Node("ln2", S.LayerNorm()),
            S.Node("pool", S.GlobalAvgPool()),
            S.Node("head", S.Dense(3)),
        ],
        input_dtype="int64",
    )


LAYER_CASES.update(
    {
        "global_avg_pool_images": LayerCase(_spec((3, 4, 5), [S.GlobalAvgPool()])),
        "global_avg_pool_sequences": LayerCase(_spec((4, 6), [S.Dense(5), S.GlobalAvgPool()])),
        "conv2d_same": LayerCase(_spec((2, 5, 5), [S.Conv2D(3, 5, padding="same")])),
        "graph_resnet_block": LayerCase(_resnet_block()),
        "graph_encoder_block": LayerCase(_encoder_block()),
        "graph_concat": LayerCase(
            S.ModelSpec.from_nodes(
                (3, 4, 4),
                [
                    S.Node("a", S.Conv2D(2, 1)),
                    S.Node("b", S.Conv2D(3, 3, padding="same"), "input"),
                    S.Node("cat", S.Concat(), ["a", "input", "b"]),
                    S.Node("relu", S.ReLU()),
                ],
            )
        ),
        **{f"graph_random_{i}": LayerCase(random_graph(i, images=i % 2 == 0)) for i in range(6)},
    }
)
LAYER_CASES.update({name: LayerCase(spec) for name, spec in OP_SPECS.items()})


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
    | {f"op:{o}" for o in OPS if o not in FOLDED}
    | {"spec:graph"}
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
        return rng.integers(0, vocabulary(spec), (n,) + spec.input_shape)
    return rng.normal(0.0, 1.0, (n,) + spec.input_shape).astype(np.float32)


def vocabulary(spec: S.ModelSpec) -> int:
    """How many token ids an int64 spec takes: its embedding's vocabulary, or the rows of the
    table an operator node gathers from with the ids."""
    first = spec.layers[0]
    if isinstance(first, S.Embedding):
        return first.vocab_size
    for layer, plan in zip(spec.layers, spec.plans, strict=True):
        if plan is not None and plan.op == "Gather" and plan.args[1] == ("node", 0) and isinstance(layer, S.Op):
            return layer.weights[layer.inputs[0]].shape[0]
    raise ValueError("an int64 spec the kit runs starts with an embedding or a Gather of the ids")


def targets(spec: S.ModelSpec, loss: str, n: int = 4, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = spec.output_shape
    if loss == "cross_entropy":
        return rng.integers(0, out[-1], (n,) + out[:-1])
    return rng.normal(0.0, 1.0, (n,) + out).astype(np.float32)
