"""mindspore.nn cells built from a ModelSpec: a sequential spec as an ``nn.SequentialCell``,
whose children are numbered like the spec's layers, a graph spec as a :class:`Graph`, whose
``nodes`` are numbered the same way. ``nn.Dense`` weights are stored ``(out, in)`` and
``nn.LayerNorm`` calls its weights gamma and beta, everything else carries the canonical name."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from sdk_core import ModelSpec
from sdk_core.model import spec as S


def _zeros(*shape: int) -> Tensor:
    return Tensor(np.zeros(shape, np.float32))


class BatchNorm(nn.Cell):
    """Batch normalization with the core's rule (running variance from the unbiased batch
    variance, ``r = (1 - momentum) r + momentum batch``); channels on axis 1. MindSpore's own
    kernel (``ops.batch_norm``) follows the same rule; written out in elementwise operations,
    its gradients kept ~30 activation-sized tensors per layer alive and took five to nine
    times as long (``benchmarks/mindspore_cpu_layers.py``)."""

    def __init__(self, channels: int, layer: S.BatchNorm) -> None:
        super().__init__()
        self.eps, self.momentum = layer.eps, layer.momentum
        self.weight = Parameter(Tensor(np.ones(channels, np.float32)), name="weight")
        self.bias = Parameter(_zeros(channels), name="bias")
        self.running_mean = Parameter(_zeros(channels), name="running_mean", requires_grad=False)
        self.running_var = Parameter(Tensor(np.ones(channels, np.float32)), name="running_var", requires_grad=False)

    def construct(self, x):
        if self.training and x.size == x.shape[1]:  # one value per channel: no unbiased variance
            return self._written_out(x)
        return ops.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )

    def _written_out(self, x):
        shape, axes = (1, -1) + (1,) * (x.ndim - 2), (0,) + tuple(range(2, x.ndim))
        mean = x.mean(axes)
        var = ((x - mean.reshape(shape)) ** 2).mean(axes)
        m = self.momentum
        ops.assign(self.running_mean, (1 - m) * self.running_mean + m * mean)
        ops.assign(self.running_var, (1 - m) * self.running_var)  # n - 1 = 0: the core adds 0 * var
        y = (x - mean.reshape(shape)) / ops.sqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


class Embedding(nn.Cell):
    def __init__(self, layer: S.Embedding) -> None:
        super().__init__()
        self.weight = Parameter(_zeros(layer.vocab_size, layer.dim), name="weight")
        self.has_position = layer.max_len > 0
        if self.has_position:
            self.position = Parameter(_zeros(layer.max_len, layer.dim), name="position")

    def construct(self, x):
        y = ops.gather(self.weight, x, 0)
        if self.has_position:
            y = y + self.position[: x.shape[1]]
        return y


class Attention(nn.Cell):
    """Multi-head self-attention; head h uses columns ``h*dh:(h+1)*dh`` of each projection."""

    def __init__(self, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads, self.causal, self.scale = heads, causal, 1.0 / math.sqrt(dim // heads)
        self.q, self.k, self.v, self.o = (nn.Dense(dim, dim) for _ in range(4))

    def _split(self, t, b, n, d):
        return t.reshape(b, n, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    def construct(self, x):
        b, n, d = x.shape
        q = self._split(self.q(x), b, n, d)
        k = self._split(self.k(x), b, n, d)
        v = self._split(self.v(x), b, n, d)
        scores = ops.matmul(q, k.transpose(0, 1, 3, 2)) * self.scale
        if self.causal:
            mask = ops.tril(ops.ones((n, n), ms.bool_))
            scores = ops.masked_fill(scores, ops.logical_not(mask), float("-inf"))
        ctx = ops.matmul(ops.softmax(scores, -1), v).transpose(0, 2, 1, 3).reshape(b, n, d)
        return self.o(ctx)


class Tanh(nn.Cell):
    """tanh from exp: MindSpore's CPU tanh kernel is off by up to 1e-4, this by about 1e-6."""

    def construct(self, x):
        e = ops.exp(-2 * ops.abs(x))
        return ops.sign(x) * (1 - e) / (1 + e)


class GlobalAvgPool(nn.Cell):
    """The mean over H, W of an NCHW batch, over T of a (batch, T, D) one."""

    def __init__(self, images: bool) -> None:
        super().__init__()
        self.axes = (2, 3) if images else (1,)

    def construct(self, x):
        return x.mean(self.axes)


class Add(nn.Cell):
    """The sum of a list of inputs."""

    def construct(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Cell):
    """A list of inputs joined along the batch's channel ``axis``."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def construct(self, xs):
        return ops.cat(xs, self.axis)


class UnfoldConv2d(nn.Cell):
    """A convolution as patches (``ops.unfold``) fed to a 1 x 1, stride-1 convolution, with
    ``nn.Conv2d``'s parameter names and layout. MindSpore 2.10's CPU kernel hands oneDNN a fixed
    NCHW layout, for which oneDNN runs every convolution but a 1 x 1, stride-1 one (a matmul)
    on its reference kernel: a 3 x 3, 64-channel convolution of 8 x 64 x 56 x 56 with its
    gradients took 2.6 s, against 76 ms this way (``benchmarks/mindspore_cpu_layers.py``)."""

    def __init__(self, shape: tuple[int, ...], layer: S.Conv2D) -> None:
        super().__init__()
        k = layer.kernel_size
        self.k, self.stride, self.padding, self.filters = k, layer.stride, layer.padding, layer.filters
        self.out_hw = layer.output_shape(shape)[1:]
        self.weight = Parameter(_zeros(layer.filters, shape[0], k, k), name="weight")
        self.has_bias = layer.bias
        if layer.bias:
            self.bias = Parameter(_zeros(layer.filters), name="bias")

    def construct(self, x):
        patches = ops.unfold(x, self.k, padding=self.padding, stride=self.stride)  # (n, c*k*k, oh*ow)
        kernel = self.weight.reshape(self.filters, -1, 1, 1)  # (out, c*k*k): unfold's order
        y = ops.conv2d(patches.reshape(x.shape[0], -1, *self.out_hw), kernel)
        if self.has_bias:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y


def _layernorm(dim: int, eps: float) -> nn.LayerNorm:
    return nn.LayerNorm((dim,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)


class TransformerBlock(nn.Cell):
    def __init__(self, dim: int, layer: S.TransformerBlock) -> None:
        super().__init__()
        self.ln1, self.ln2 = _layernorm(dim, 1e-5), _layernorm(dim, 1e-5)
        self.attn = Attention(dim, layer.num_heads, layer.causal)
        self.fc1, self.fc2 = nn.Dense(dim, dim * layer.mlp_ratio), nn.Dense(dim * layer.mlp_ratio, dim)
        self.gelu = nn.GELU(approximate=True)
        self.drop = nn.Dropout(p=layer.dropout)

    def construct(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.fc2(self.gelu(self.fc1(self.ln2(x)))))


def _cell(layer: S.Layer, shape: tuple[int, ...], unfold: bool) -> nn.Cell:
    if isinstance(layer, S.Dense):
        return nn.Dense(shape[-1], layer.units, has_bias=layer.bias)
    if isinstance(layer, S.Conv2D) and unfold and (layer.kernel_size, layer.stride, layer.padding) != (1, 1, 0):
        return UnfoldConv2d(shape, layer)
    if isinstance(layer, S.Conv2D):
        return nn.Conv2d(
            shape[0],
            layer.filters,
            layer.kernel_size,
            layer.stride,
            pad_mode="pad",
            padding=layer.padding,
            has_bias=layer.bias,
        )
    if isinstance(layer, S.MaxPool2D):
        return nn.MaxPool2d(layer.pool_size, layer.step, pad_mode="valid")
    if isinstance(layer, S.AvgPool2D):
        return nn.AvgPool2d(layer.pool_size, layer.step, pad_mode="valid")
    if isinstance(layer, S.BatchNorm):
        return BatchNorm(shape[0], layer)
    if isinstance(layer, S.LayerNorm):
        return _layernorm(shape[-1], layer.eps)
    if isinstance(layer, S.Dropout):
        return nn.Dropout(p=layer.rate)
    if isinstance(layer, S.Embedding):
        return Embedding(layer)
    if isinstance(layer, S.Attention):
        return Attention(shape[-1], layer.num_heads, layer.causal)
    if isinstance(layer, S.TransformerBlock):
        return TransformerBlock(shape[-1], layer)
    if isinstance(layer, S.GlobalAvgPool):
        return GlobalAvgPool(len(shape) == 3)
    if isinstance(layer, S.Concat):
        return Concat(S.channel_axis(shape) + 1)
    simple = {
        "flatten": nn.Flatten,
        "add": Add,
        "relu": nn.ReLU,
        "tanh": Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": lambda: nn.GELU(approximate=True),
        "softmax": lambda: nn.Softmax(axis=-1),
    }
    return simple[layer.type]()


def _node(spec: ModelSpec, i: int, unfold: bool) -> nn.Cell:
    if isinstance(spec.layers[i], S.Op):
        from ._ops import op_cell  # _ops builds on this module's cells

        return op_cell(spec, i)
    return _cell(spec.layers[i], spec.input_shape_of(i), unfold)


class Graph(nn.Cell):
    """A graph spec's nodes run in order, each fed from ``spec.sources``. Outputs sit in a list
    of slots; a slot is reused once the last node reading its output has run, so eager runs
    drop each output after its last reader and compiled ones see a fixed-length list."""

    def __init__(self, spec: ModelSpec, unfold: bool) -> None:
        super().__init__()
        self.nodes = nn.CellList([_node(spec, i, unfold) for i in range(len(spec.layers))])
        self.merges = tuple(l.merge for l in spec.layers)
        slot_of, free, reads, writes = {-1: 0}, [], [], []
        for i, (row, done) in enumerate(zip(spec.sources, spec.frees, strict=True)):
            reads.append(tuple(slot_of[j] for j in row))
            free += [slot_of.pop(j) for j in done]
            slot_of[i] = free.pop() if free else len(slot_of)  # no free slot: every one is live
            writes.append(slot_of[i])
        self.reads, self.writes = tuple(reads), tuple(writes)
        self.width, self.out = max(writes) + 1, writes[-1]

    def construct(self, x):
        outs = [x] * self.width
        for cell, reads, merge, write in zip(self.nodes, self.reads, self.merges, self.writes):  # noqa: B905
            outs[write] = cell([outs[j] for j in reads]) if merge else cell(outs[reads[0]])
        return outs[self.out]


def build(spec: ModelSpec, unfold: bool = False) -> nn.Cell:
    """The network of ``spec`` (a :class:`Graph` where it has operator nodes, ``_ops``);
    ``unfold`` (the CPU target): every convolution but a 1 x 1, stride-1, unpadded one as an
    :class:`UnfoldConv2d`."""
    if spec.is_graph or any(isinstance(l, S.Op) for l in spec.layers):
        return Graph(spec, unfold)
    return nn.SequentialCell([_cell(l, spec.shapes[i], unfold) for i, l in enumerate(spec.layers)])


def canonical_names(net: nn.Cell, spec: ModelSpec) -> dict[str, tuple[Parameter, bool]]:
    """Canonical name -> (parameter, stored transposed)."""
    dense = {f"{name}.weight" for name, cell in net.cells_and_names() if isinstance(cell, nn.Dense)}
    norms = {name for name, cell in net.cells_and_names() if isinstance(cell, nn.LayerNorm)}
    prefix = "nodes." if isinstance(net, Graph) else ""
    out = {}
    for name, param in net.parameters_and_names():
        owner, _, leaf = name.rpartition(".")
        if owner in norms:
            leaf = {"gamma": "weight", "beta": "bias"}[leaf]
        index, _, inner = owner.removeprefix(prefix).partition(".")
        node = spec.node_names[int(index)]
        out[f"{node}.{inner}.{leaf}" if inner else f"{node}.{leaf}"] = (param, name in dense)
    return out
