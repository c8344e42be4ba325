"""torch.nn modules built from a ModelSpec. ``nn.Sequential`` numbers its children like the
spec numbers its layers, and :class:`Graph` names them like a graph spec names its nodes, so
state-dict keys are the canonical names; only ``nn.Linear`` weights differ (stored
``(out, in)``, canonical ``(in, out)``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sdk_core import ModelSpec
from sdk_core.model import opfuse
from sdk_core.model import spec as S
from sdk_core.model.graph import frees

from . import _ops


class TokenEmbedding(nn.Embedding):
    """Token embedding plus learned positions (``position``) when ``max_len`` > 0."""

    def __init__(self, layer: S.Embedding) -> None:
        super().__init__(layer.vocab_size, layer.dim)
        self.position = nn.Parameter(torch.zeros(layer.max_len, layer.dim)) if layer.max_len else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y + self.position[: x.shape[1]] if self.position is not None else y


class SelfAttention(nn.Module):
    """Multi-head self-attention; head h uses columns ``h*dh:(h+1)*dh`` of each projection."""

    def __init__(self, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        # the heads this rank holds: all of them, or heads / T of them when tensor parallelism
        # gives it a column slice of q, k and v (its output is then that slice's width)
        split = lambda p: p(x).view(b, t, -1, d // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.q), split(self.k), split(self.v), is_causal=self.causal)
        return self.o(out.transpose(1, 2).reshape(b, t, -1))


class TransformerBlock(nn.Module):
    """Pre-norm block; with ``remat`` set, training recomputes its insides during backward
    (``torch.utils.checkpoint``): only the block's input is kept."""

    remat = False

    def __init__(self, dim: int, layer: S.TransformerBlock) -> None:
        super().__init__()
        hidden = dim * layer.mlp_ratio
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, layer.num_heads, layer.causal)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(layer.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.remat and self.training and torch.is_grad_enabled():
            return checkpoint(self.inside, x, use_reentrant=False)  # the RNG state is replayed: same dropout
        return self.inside(x)

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh")))


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x.mean(dim=1)


class Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1 if xs[0].dim() == 4 else -1)


class Graph(nn.ModuleDict):
    """A graph spec's nodes, run in order; each output is kept until its last reader.

    Operator nodes that make up one of torch's fused operations (:mod:`sdk_core.model.opfuse`:
    a GELU, scaled dot-product attention, a linear layer) run as that operation at the
    region's last node; the region's other nodes compute nothing. Weights stay where they
    are, so the state-dict names do not change."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__({n: _node(spec, i) for i, n in enumerate(spec.names)})
        run: list[nn.Module | None] = list(self.values())
        sources = list(spec.sources)
        if any(spec.plans):
            for output, members, module, reads in _fused(spec, dict(self.items())):
                for i in members - {output}:
                    run[i], sources[i] = None, ()
                self.add_module(f"fused:{spec.names[output]}", module)  # no weights: names unchanged
                run[output], sources[output] = module, reads
        done = frees(sources)
        self.run = [(i, m, sources[i], done[i]) for i, m in enumerate(run) if m is not None]
        self.last = len(sources) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = {-1: x}
        for i, module, sources, done in self.run:
            outs[i] = module(*(outs[j] for j in sources))
            for j in done:  # free what no later node reads
                del outs[j]
        return outs[self.last]


class FusedAttention(nn.Module):
    """``softmax(q @ kt * scale + mask) @ v`` as one ``F.scaled_dot_product_attention``."""

    def __init__(self, region: opfuse.Attention) -> None:
        super().__init__()
        self.scale, self.causal = region.scale, region.causal
        mask = region.mask
        if isinstance(mask, np.ndarray):
            self.register_buffer("mask", torch.from_numpy(mask.astype(np.float32)), persistent=False)
        else:
            self.mask = None

    def forward(self, q: torch.Tensor, kt: torch.Tensor, v: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
        given = mask[0] if mask else self.mask
        given = given.to(q.dtype) if given is not None and given.dtype != torch.bool else given
        return F.scaled_dot_product_attention(
            q, kt.transpose(-1, -2), v, attn_mask=given, is_causal=self.causal, scale=self.scale
        )


class FusedLinear(nn.Module):
    """``x @ weight + bias`` as one ``F.linear``; the weights stay in their operator nodes
    (held here unregistered, so they are not named twice)."""

    def __init__(self, matmul: nn.Module, add: nn.Module, weight: str, bias: str) -> None:
        super().__init__()
        self.parts = ((matmul, weight.split(".")), (add, bias.split(".")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (mm, w), (add, b) = self.parts
        weight = mm._weight(w)
        flat = torch.addmm(add._weight(b), x.reshape(-1, x.shape[-1]), weight)  # grads in (in, out) as stored
        return flat.view(*x.shape[:-1], weight.shape[1])


def _fused(
    spec: ModelSpec, modules: dict[str, nn.Module]
) -> list[tuple[int, frozenset[int], nn.Module, tuple[int, ...]]]:
    """The fused regions: (last node, nodes, module, what it reads)."""
    names, shapes = spec.names, {p.name: p.shape for p in spec.layout()}
    out: list[tuple[int, frozenset[int], nn.Module, tuple[int, ...]]] = []
    for g in opfuse.gelu_regions(spec.plans, spec.sources):
        out.append((g.output, g.members, nn.GELU(approximate=g.approximate), (g.source,)))
    for a in opfuse.attention_regions(spec.plans, spec.sources, spec.shapes):
        reads = (a.q, a.kt, a.v) + ((a.mask,) if isinstance(a.mask, int) else ())
        out.append((a.output, a.members, FusedAttention(a), reads))
    for lin in opfuse.linear_regions(spec.plans, spec.sources, shapes):
        mm, add = sorted(lin.members)
        node = lambda i, full: full[len(names[i]) + 1 :]  # the key inside the node
        module = FusedLinear(modules[names[mm]], modules[names[add]], node(mm, lin.weight), node(add, lin.bias))
        out.append((lin.output, lin.members, module, (lin.source,)))
    return out


def _layer(layer: S.Layer, shape: tuple[int, ...]) -> nn.Module:
    if isinstance(layer, S.Dense):
        return nn.Linear(shape[-1], layer.units, bias=layer.bias)
    if isinstance(layer, S.Conv2D):
        return nn.Conv2d(shape[0], layer.filters, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias)
    if isinstance(layer, S.MaxPool2D):
        return nn.MaxPool2d(layer.pool_size, layer.step)
    if isinstance(layer, S.AvgPool2D):
        return nn.AvgPool2d(layer.pool_size, layer.step)
    if isinstance(layer, S.BatchNorm):
        norm = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
        return norm(shape[0], eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, S.LayerNorm):
        return nn.LayerNorm(shape[-1], eps=layer.eps)
    if isinstance(layer, S.Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, S.Embedding):
        return TokenEmbedding(layer)
    if isinstance(layer, S.Attention):
        return SelfAttention(shape[-1], layer.num_heads, layer.causal)
    if isinstance(layer, S.TransformerBlock):
        return TransformerBlock(shape[-1], layer)
    simple = {
        "flatten": nn.Flatten,
        "global_avg_pool": GlobalAvgPool,
        "add": Add,
        "concat": Concat,
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": lambda: nn.GELU(approximate="tanh"),
        "softmax": lambda: nn.Softmax(dim=-1),
    }
    return simple[layer.type]()


def _node(spec: ModelSpec, i: int) -> nn.Module:
    """Node ``i``'s module: an operator node's from its plan, a layer's from its input shape."""
    layer = spec.layers[i]
    if isinstance(layer, S.Op):
        return _ops.node(spec.node_names[i], layer, spec.plans[i])
    return _layer(layer, spec.input_shape_of(i))


def build(spec: ModelSpec) -> nn.Module:
    if spec.is_graph:
        return Graph(spec)
    return nn.Sequential(*(_node(spec, i) for i in range(len(spec.layers))))


def linear_weights(model: nn.Module) -> set[str]:
    """State-dict keys of ``nn.Linear`` weights: the ones stored transposed."""
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear)}
