"""Fusable regions of operator nodes (sdk_core.model.opfuse) and torch running them fused:
found by structure, checked by value, and the same numbers as node-by-node NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdk_core import Constant, ModelSpec, Node, Op, Optimizer, Stack, Weight
from sdk_core.model import opfuse

I64 = np.int64


def c(value, dtype=np.float32) -> Constant:
    return Constant(np.asarray(value, dtype))


def n(name, kind, *inputs, weights=None, constants=None, **attributes) -> Node:
    return Node(name, Op(kind, inputs=inputs, attributes=attributes, weights=weights or {}, constants=constants or {}))


def gelu_erf(x: str, p: str = "g") -> list[Node]:
    """torch.onnx.export's order for nn.GELU()."""
    return [
        n(f"{p}div", "Div", x, "r2", constants={"r2": c(math.sqrt(2))}),
        n(f"{p}erf", "Erf", f"{p}div"),
        n(f"{p}add", "Add", f"{p}erf", "one", constants={"one": c(1.0)}),
        n(f"{p}mul", "Mul", x, f"{p}add"),
        n(f"{p}half", "Mul", f"{p}mul", "h", constants={"h": c(0.5)}),
    ]


def gelu_tanh(x: str, p: str = "t", k: float = 0.044715) -> list[Node]:
    """GPT-2's gelu_new with Pow, in another order than the erf form."""
    return [
        n(f"{p}pow", "Pow", x, "three", constants={"three": c(3.0)}),
        n(f"{p}k", "Mul", "k", f"{p}pow", constants={"k": c(k)}),
        n(f"{p}in", "Add", x, f"{p}k"),
        n(f"{p}s", "Mul", f"{p}in", "s", constants={"s": c(math.sqrt(2 / math.pi))}),
        n(f"{p}tanh", "Tanh", f"{p}s"),
        n(f"{p}one", "Add", "one", f"{p}tanh", constants={"one": c(1.0)}),
        n(f"{p}half", "Mul", x, "h", constants={"h": c(0.5)}),
        n(f"{p}out", "Mul", f"{p}half", f"{p}one"),
    ]


def mlp(body: list[Node], last: str) -> ModelSpec:
    head = [n("fc", "MatMul", "input", "w", weights={"w": Weight((8, 16))})]
    tail = [n("out", "MatMul", last, "w", weights={"w": Weight((16, 4))})]
    return ModelSpec.from_nodes((8,), head + body + tail)


def regions(spec: ModelSpec) -> list[opfuse.Region]:
    return opfuse.gelu_regions(spec.plans, spec.sources)


def test_gelu_is_found_in_its_erf_and_tanh_forms_whatever_the_order():
    erf, tanh = mlp(gelu_erf("fc"), "ghalf"), mlp(gelu_tanh("fc"), "tout")
    (r,) = regions(erf)
    assert (r.approximate, erf.names[r.output], erf.names[r.source], len(r.members)) == ("none", "ghalf", "fc", 5)
    (r,) = regions(tanh)
    assert (r.approximate, tanh.names[r.output], len(r.members)) == ("tanh", "tout", 8)


def test_what_only_looks_like_a_gelu_is_left_alone():
    assert regions(mlp(gelu_tanh("fc", k=0.05), "tout")) == []  # another constant: another function
    # an intermediate read outside the region: fusing would lose it
    body = gelu_erf("fc") + [n("both", "Add", "ghalf", "gerf")]
    (r,) = regions(mlp(body, "both")) or [None]
    assert r is None or "gerf" not in {mlp(body, "both").names[i] for i in r.members}


def attention_spec(mask: str) -> ModelSpec:
    """Single-head attention over (T, D) = (6, 8) tokens, scores scaled by a Div."""
    t, d = 6, 8
    nodes = [n(f"{p}", "MatMul", "input", "w", weights={"w": Weight((d, d))}) for p in "qkv"]
    nodes += [
        n("q4", "Unsqueeze", "q", "ax", constants={"ax": c([1], I64)}),
        n("v4", "Unsqueeze", "v", "ax", constants={"ax": c([1], I64)}),
        n("kt", "Unsqueeze", "k", "ax", constants={"ax": c([1], I64)}),
        n("kt4", "Transpose", "kt", perm=[0, 1, 3, 2]),
        n("scores", "MatMul", "q4", "kt4"),
        n("scaled", "Div", "scores", "r", constants={"r": c(math.sqrt(d))}),
    ]
    causal = np.where(np.triu(np.ones((t, t), bool), 1), -1e9, 0.0)
    if mask == "causal":
        nodes.append(n("masked", "Add", "scaled", "m", constants={"m": c(causal)}))
    elif mask == "constant":
        nodes.append(n("masked", "Add", "scaled", "m", constants={"m": c(np.tril(causal.T))}))
    else:  # a mask computed from the input, as BERT's attention mask is
        nodes.append(n("bias", "ReduceMean", "input", "ax", constants={"ax": c([2], I64)}, keepdims=1))
        nodes.append(n("bias4", "Unsqueeze", "bias", "ax", constants={"ax": c([1], I64)}))
        nodes.append(n("masked", "Add", "scaled", "bias4"))
    nodes += [
        n("p", "Softmax", "masked", axis=-1),
        n("mixed", "MatMul", "p", "v4"),
        n("flat", "Squeeze", "mixed", "ax", constants={"ax": c([1], I64)}),
        n("o", "MatMul", "flat", "w", weights={"w": Weight((d, d))}),
        n("ob", "Add", "o", "b", weights={"b": Weight((d,), init="normal")}),
        n("gelu", "Add", "ob", "z", constants={"z": c(0.0)}),
    ] + gelu_erf("gelu")
    return ModelSpec.from_nodes((t, d), nodes)


@pytest.mark.parametrize("mask", ["causal", "constant", "node"])
def test_attention_is_found_with_its_scale_and_mask(mask):
    spec = attention_spec(mask)
    (a,) = opfuse.attention_regions(spec.plans, spec.sources, spec.shapes)
    assert [spec.names[i] for i in (a.output, a.q, a.kt, a.v)] == ["mixed", "q4", "kt4", "v4"]
    assert a.scale == pytest.approx(1 / math.sqrt(8))
    assert a.causal == (mask == "causal")
    if mask == "node":
        assert spec.names[a.mask] == "bias4"
    elif mask == "constant":
        assert isinstance(a.mask, np.ndarray) and a.mask.shape == (6, 6)
    (lin,) = opfuse.linear_regions(spec.plans, spec.sources, {p.name: p.shape for p in spec.layout()})
    assert (spec.names[lin.output], lin.weight, lin.bias) == ("ob", "o.w", "ob.b")


@pytest.mark.parametrize("mask", ["causal", "constant", "node"])
def test_torch_runs_fused_regions_with_the_numbers_of_numpy(mask):
    pytest.importorskip("torch")
    pytest.importorskip("sdk_numpy")
    spec = attention_spec(mask)
    ref, fused = Stack("numpy").build(spec, seed=3), Stack("torch").build(spec, seed=3)
    modules = dict(fused.model.module.named_modules())
    assert {"fused:mixed", "fused:ob", "fused:ghalf"} <= set(modules)  # the regions did fuse
    assert set(fused.get_weights()) == set(ref.get_weights())  # and the weights kept their names
    x = np.random.default_rng(0).normal(size=(5, 6, 8)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(5, 6, 8)).astype(np.float32)
    np.testing.assert_allclose(fused.predict(x), ref.predict(x), rtol=1e-4, atol=1e-5)
    rule = Optimizer("sgd", lr=0.1)
    assert float(fused.train_step("mse", rule)(x, y)) == pytest.approx(float(ref.train_step("mse", rule)(x, y)), 1e-5)
    after, expect = fused.get_weights(), ref.get_weights()
    for name, value in expect.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_node_on_weights_alone_has_no_batch_axis_and_trains_everywhere():
    """A tied output layer (the token table transposed) is a node on weights alone: it has
    no batch axis, the nodes that read it broadcast it, and every framework trains it as the
    NumPy reference does; a layer may not read it."""
    pytest.importorskip("sdk_numpy")
    from sdk_core import PluginManager, SpecError
    from sdk_core.model.spec import Dense

    t, d, v = 6, 8, 11
    table = n("table", "Identity", "w", weights={"w": Weight((v, d), init="normal")})
    nodes = [
        table,
        n("tok", "Gather", "table", "input"),
        n("h", "Add", "tok", "pos", weights={"pos": Weight((1, t, d), init="normal")}),
        n("out", "Transpose", "table", perm=[1, 0]),
        n("logits", "MatMul", "h", "out"),
    ]  # fmt: skip
    spec = ModelSpec.from_nodes((t,), nodes, input_dtype="int64")
    assert spec.shapes[1] == (v, d) and spec.shapes[4] == (d, v) and spec.shapes[-1] == (t, v)
    assert spec.batched == (True, False, True, True, False, True)
    assert spec.param_count() == v * d + t * d  # the table once
    with pytest.raises(SpecError, match="no batch axis"):
        ModelSpec.from_nodes(
            (t,), [*nodes, Node("dense", Dense(4), ("table",)), n("o", "Add", "logits", "dense")], input_dtype="int64"
        )
    x = np.random.default_rng(0).integers(0, v, (4, t))
    y = np.random.default_rng(1).integers(0, v, (4, t))
    ref = Stack("numpy").build(spec, seed=1)
    weights, want = ref.get_weights(), ref.predict(x)
    rule = Optimizer("sgd", lr=0.1)
    loss = float(ref.train_step("cross_entropy", rule)(x, y))
    after = ref.get_weights()
    for framework in sorted(f for f, info in PluginManager().frameworks().items() if info.installed and info.trains):
        stack = Stack(framework).build(spec)
        stack.set_weights(weights)
        np.testing.assert_allclose(stack.predict(x), want, rtol=1e-4, atol=1e-5, err_msg=framework)
        assert float(stack.train_step("cross_entropy", rule)(x, y)) == pytest.approx(loss, 1e-5)
        for name, value in stack.get_weights().items():
            np.testing.assert_allclose(value, after[name], rtol=1e-4, atol=1e-6, err_msg=f"{framework} {name}")
