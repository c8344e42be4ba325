"""torch.nn modules built from a ModelSpec. ``nn.Sequential`` numbers its children like the
spec numbers its layers, and :class:`Graph` names them like a graph spec names its nodes, so
state-dict keys are the canonical names; only ``nn.Linear`` weights differ (stored
``(out, in)``, canonical ``(in, out)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sdk_core import ModelSpec
from sdk_core.model import spec as S

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
        split = lambda p: p(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.q), split(self.k), split(self.v), is_causal=self.causal)
        return self.o(out.transpose(1, 2).reshape(b, t, d))


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
    """A graph spec's nodes, run in order; each output is kept until its last reader."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__({n: _node(spec, i) for i, n in enumerate(spec.names)})
        self.sources, self.frees = spec.sources, spec.frees

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = {-1: x}
        for i, (module, sources, done) in enumerate(zip(self.values(), self.sources, self.frees, strict=True)):
            outs[i] = module(*(outs[j] for j in sources))
            for j in done:  # free what no later node reads
                del outs[j]
        return outs[len(self.sources) - 1]


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
