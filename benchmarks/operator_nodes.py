"""Operator nodes against layers: LeNet-5 and the zoo GPT written once as operator nodes and
once as layers, with the same weights, trained in one process as interleaved pairs.

    python benchmarks/operator_nodes.py [--frameworks torch,jax,numpy] [--models lenet5,gpt]
                                        [--pairs 7] [--steps 20]

Each pair times ``--steps`` training steps (sgd) of each form, alternating which goes first;
the report is the median of the pairs' op/layer step-time ratios with their lowest and
highest. The first pair (compilation, warm-up) is not counted. Before timing, both forms
must give the same predictions and the same weights after one step (1e-4): they are the same
model. The target: the operator form within 1.10x of the layer form in torch and JAX.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from sdk_core import ModelSpec, Node, Op, Optimizer, Stack, digits, zoo
from sdk_core.model.spec import Constant, Weight

I64 = np.int64


def node(name: str, kind: str, *inputs: str, weights=None, constants=None, **attributes) -> Node:
    return Node(name, Op(kind, inputs=inputs, attributes=attributes, weights=weights or {}, constants=constants or {}))


def const(value, dtype=np.float32) -> Constant:
    return Constant(np.asarray(value, dtype))


class Builder:
    """Operator nodes with weights named after the layer form's canonical weights."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.rename: dict[str, str] = {}  # layer weight name -> operator weight name
        self.count = 0

    def add(self, kind: str, *inputs: str, weights=None, constants=None, **attributes) -> str:
        self.count += 1
        name = f"{kind.lower()}{self.count}"
        weights = weights or {}
        keys = {}
        for key, (layer_name, shape, init) in weights.items():
            keys[key] = Weight(shape, init=init)
            self.rename[layer_name] = f"{name}.{key}"
        self.nodes.append(node(name, kind, *inputs, weights=keys, constants=constants, **attributes))
        return name

    def linear(self, h: str, prefix: str, n_in: int, n_out: int) -> str:
        h = self.add("MatMul", h, "w", weights={"w": (f"{prefix}weight", (n_in, n_out), "glorot")})
        return self.add("Add", h, "b", weights={"b": (f"{prefix}bias", (n_out,), "zeros")})

    def layer_norm(self, h: str, prefix: str, d: int) -> str:
        return self.add(
            "LayerNormalization",
            h,
            "s",
            "b",
            weights={"s": (f"{prefix}weight", (d,), "ones"), "b": (f"{prefix}bias", (d,), "zeros")},
            epsilon=1e-5,
        )

    def gelu(self, x: str) -> str:
        """The tanh approximation, as the layers compute it."""
        cube = self.add("Mul", self.add("Mul", x, x), x)
        inner = self.add("Add", x, self.add("Mul", cube, "k", constants={"k": const(0.044715)}))
        t = self.add("Tanh", self.add("Mul", inner, "c", constants={"c": const(math.sqrt(2 / math.pi))}))
        half = self.add("Mul", x, "h", constants={"h": const(0.5)})
        return self.add("Mul", half, self.add("Add", t, "one", constants={"one": const(1.0)}))

    def attention(self, h: str, prefix: str, t: int, d: int, heads: int) -> str:
        dh = d // heads
        split = const([0, 0, heads, dh], I64)

        def project(kind: str, perm: list[int]) -> str:
            p = self.linear(h, f"{prefix}{kind}.", d, d)
            return self.add("Transpose", self.add("Reshape", p, "s", constants={"s": split}), perm=perm)

        q, k, v = project("q", [0, 2, 1, 3]), project("k", [0, 2, 3, 1]), project("v", [0, 2, 1, 3])
        scores = self.add("Mul", self.add("MatMul", q, k), "scale", constants={"scale": const(1 / math.sqrt(dh))})
        mask = np.where(np.triu(np.ones((t, t), bool), 1), -1e30, 0.0)
        scores = self.add("Add", scores, "mask", constants={"mask": const(mask)})
        out = self.add("MatMul", self.add("Softmax", scores), v)
        out = self.add(
            "Reshape", self.add("Transpose", out, perm=[0, 2, 1, 3]), "s", constants={"s": const([0, 0, d], I64)}
        )
        return self.linear(out, f"{prefix}o.", d, d)


def lenet5_operators() -> tuple[ModelSpec, dict[str, str]]:
    b = Builder()
    h = "input"
    for i, (filters, channels) in enumerate([(6, 1), (16, 6)]):
        conv = 3 * i  # node index of the conv layer in zoo.lenet5()
        h = b.add(
            "Conv",
            h,
            "w",
            "b",
            weights={
                "w": (f"{conv}.weight", (filters, channels, 5, 5), "glorot"),
                "b": (f"{conv}.bias", (filters,), "zeros"),
            },
        )
        h = b.add("MaxPool", b.add("Relu", h), kernel_shape=[2, 2], strides=[2, 2])
    h = b.add("Flatten", h)
    for index, (n_in, n_out) in zip((7, 9, 11), [(400, 120), (120, 84), (84, 10)], strict=True):
        h = b.linear(h, f"{index}.", n_in, n_out)
        if index != 11:
            h = b.add("Relu", h)
    return ModelSpec.from_nodes((1, 32, 32), b.nodes, name="lenet5-operators"), b.rename


def gpt_operators(
    vocab: int = 64, t: int = 32, d: int = 64, heads: int = 4, blocks: int = 2
) -> tuple[ModelSpec, dict[str, str]]:
    b = Builder()
    h = b.add("Gather", "table", "input", weights={"table": ("0.weight", (vocab, d), "normal")})
    h = b.add("Add", h, "pos", weights={"pos": ("0.position", (t, d), "normal")})
    for block in range(1, blocks + 1):
        p = f"{block}."
        h = b.add("Add", h, b.attention(b.layer_norm(h, f"{p}ln1.", d), f"{p}attn.", t, d, heads))
        mlp = b.linear(b.gelu(b.linear(b.layer_norm(h, f"{p}ln2.", d), f"{p}fc1.", d, 4 * d)), f"{p}fc2.", 4 * d, d)
        h = b.add("Add", h, mlp)
    h = b.linear(b.layer_norm(h, f"{blocks + 1}.", d), f"{blocks + 2}.", d, vocab)
    return ModelSpec.from_nodes((t,), b.nodes, input_dtype="int64", name="gpt-operators"), b.rename


def pair_of(model: str, framework: str):
    if model == "lenet5":
        layers, (ops, rename) = zoo.lenet5(), lenet5_operators()
        x, y = digits(image_size=32)[:2]
    else:
        layers, (ops, rename) = zoo.gpt(), gpt_operators()
        rng = np.random.default_rng(0)
        x = rng.integers(0, 64, (512, 32))
        y = np.roll(x, -1, axis=1)
    a = Stack(framework).build(layers, seed=0)
    weights = a.get_weights()
    b = Stack(framework).build(ops)
    b.set_weights({rename[name]: value for name, value in weights.items()})
    return a, b, weights, rename, x, y


def check_same(a: Stack, b: Stack, rename: dict[str, str], x, y, rule: Optimizer) -> None:
    np.testing.assert_allclose(b.predict(x[:8]), a.predict(x[:8]), rtol=1e-4, atol=1e-4, err_msg="predictions")
    la = float(a.train_step("cross_entropy", rule)(x[:8], y[:8]))
    lb = float(b.train_step("cross_entropy", rule)(x[:8], y[:8]))
    assert abs(la - lb) <= 1e-4 * max(1.0, abs(la)), (la, lb)
    wa, wb = a.get_weights(), b.get_weights()
    for name, value in wa.items():
        np.testing.assert_allclose(wb[rename[name]], value, rtol=1e-4, atol=1e-5, err_msg=name)


def run(framework: str, model: str, pairs: int, steps: int, batch: int) -> dict:
    a, b, _, rename, x, y = pair_of(model, framework)
    rule = Optimizer("sgd", lr=0.01)
    check_same(a, b, rename, x, y, rule)
    step_a, step_b = a.train_step("cross_entropy", rule), b.train_step("cross_entropy", rule)

    def timed(step) -> float:
        start = time.perf_counter()
        for s in range(steps):
            i = (s * batch) % (len(x) - batch)
            loss = step(x[i : i + batch], y[i : i + batch])
        float(loss)  # waits for the device
        return (time.perf_counter() - start) / steps

    ratios, t_layers, t_ops = [], [], []
    for r in range(pairs + 1):
        first, second = (step_a, step_b) if r % 2 == 0 else (step_b, step_a)
        t1, t2 = timed(first), timed(second)
        ta, tb = (t1, t2) if r % 2 == 0 else (t2, t1)
        if r:  # the first pair compiles and warms up
            ratios.append(tb / ta)
            t_layers.append(ta)
            t_ops.append(tb)
    return {
        "framework": framework,
        "model": model,
        "layers_ms": 1000 * statistics.median(t_layers),
        "ops_ms": 1000 * statistics.median(t_ops),
        "ratio": statistics.median(ratios),
        "low": min(ratios),
        "high": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="torch,jax,numpy")
    parser.add_argument("--models", default="lenet5,gpt")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch's intra-op threads (0: its default)")
    args = parser.parse_args()
    if args.threads and "torch" in args.frameworks:
        import torch

        torch.set_num_threads(args.threads)  # steadier on a shared machine
    print(f"{args.pairs} interleaved pairs of {args.steps} sgd steps, batch {args.batch}, after one warm-up pair")
    print(f"{'framework':<11}{'model':<8}{'layers ms':>10}{'ops ms':>9}{'ratio':>7}  {'low..high':>11}")
    for framework in args.frameworks.split(","):
        for model in args.models.split(","):
            batch = args.batch if model == "lenet5" else max(1, args.batch // 4)
            r = run(framework, model, args.pairs, args.steps, batch)
            print(
                f"{framework:<11}{model:<8}{r['layers_ms']:>10.2f}{r['ops_ms']:>9.2f}"
                f"{r['ratio']:>7.3f}  {r['low']:.3f}..{r['high']:.3f}"
            )


if __name__ == "__main__":
    main()
