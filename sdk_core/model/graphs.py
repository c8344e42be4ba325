"""Graph models for the zoo: residual networks (He et al. 2016) and a BERT-style encoder
(Devlin et al. 2019), written as :class:`~sdk_core.model.spec.Node` lists.

Node names say where a node sits: ``s2b1_conv1`` is stage 2, block 1, first convolution;
``s2b1_proj`` its projection shortcut; ``s2b1_add`` the residual sum.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import SpecError
from .spec import (
    GELU,
    Add,
    Attention,
    BatchNorm,
    Conv2D,
    Dense,
    Embedding,
    GlobalAvgPool,
    Layer,
    LayerNorm,
    MaxPool2D,
    ModelSpec,
    Node,
    ReLU,
)


class _Builder:
    """Appends nodes; ``last`` is the newest node's name."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.last = "input"

    def add(self, name: str, layer: Layer, inputs: Sequence[str] | None = None) -> str:
        self.nodes.append(Node(name, layer, tuple(inputs) if inputs is not None else (self.last,)))
        self.last = name
        return name

    def conv_bn(self, name: str, filters: int, kernel: int, stride: int = 1, relu: bool = True) -> str:
        self.add(f"{name}", Conv2D(filters, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False))
        self.add(f"{name}_bn", BatchNorm())
        return self.add(f"{name}_relu", ReLU()) if relu else self.last

    def residual(self, name: str, body_end: str, shortcut: str, filters: int, stride: int, project: bool) -> None:
        """``relu(body + shortcut)``, the shortcut projected by a strided 1x1 conv + BN when the shape changes."""
        if project:
            self.add(f"{name}_proj", Conv2D(filters, 1, stride=stride, bias=False), [shortcut])
            shortcut = self.add(f"{name}_proj_bn", BatchNorm())
        self.add(f"{name}_add", Add(), [body_end, shortcut])
        self.add(f"{name}_relu", ReLU())


def resnet(depth: int = 8, width: int = 16, input_shape: Sequence[int] = (1, 32, 32), classes: int = 10) -> ModelSpec:
    """A CIFAR-style ResNet (He et al. 2016, section 4.2): a 3x3 stem, three stages of
    ``(depth - 2) / 6`` basic blocks of ``width``, ``2 width`` and ``4 width`` channels (the
    last two start with stride 2 and a projection shortcut), global average pooling, logits.
    ``depth`` 8, 14, 20, 32, 44, 56 or 110."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise SpecError(f"'depth' must be 6n + 2 with n >= 1: 8, 14, 20, ... (got {depth!r})")
    b = _Builder()
    b.conv_bn("stem", width, 3)
    for stage in range(3):
        filters = width * 2**stage
        for block in range((depth - 2) // 6):
            name, start = f"s{stage + 1}b{block + 1}", b.last
            stride = 2 if stage and not block else 1
            b.conv_bn(f"{name}_conv1", filters, 3, stride)
            body = b.conv_bn(f"{name}_conv2", filters, 3, relu=False)
            b.residual(name, body, start, filters, stride, project=stride != 1)
    b.add("pool", GlobalAvgPool())
    b.add("fc", Dense(classes))
    return ModelSpec.from_nodes(tuple(input_shape), b.nodes, name=f"resnet{depth}")


def _imagenet(name: str, blocks: Sequence[int], bottleneck: bool, classes: int, image_size: int) -> ModelSpec:
    """ResNet-18/50 on ImageNet shapes: 7x7/2 stem, 3x3/2 max pool (without padding: 55x55
    after it where torchvision has 56x56), four stages, v1.5 (stride on the 3x3 conv)."""
    b = _Builder()
    b.conv_bn("stem", 64, 7, 2)
    b.add("stem_pool", MaxPool2D(3, stride=2))
    channels = 64
    for stage, count in enumerate(blocks):
        width = 64 * 2**stage
        out = width * 4 if bottleneck else width
        for block in range(count):
            tag, start = f"s{stage + 1}b{block + 1}", b.last
            stride = 2 if stage and not block else 1
            if bottleneck:
                b.conv_bn(f"{tag}_conv1", width, 1)
                b.conv_bn(f"{tag}_conv2", width, 3, stride)
                body = b.conv_bn(f"{tag}_conv3", out, 1, relu=False)
            else:
                b.conv_bn(f"{tag}_conv1", width, 3, stride)
                body = b.conv_bn(f"{tag}_conv2", width, 3, relu=False)
            b.residual(tag, body, start, out, stride, project=stride != 1 or channels != out)
            channels = out
    b.add("pool", GlobalAvgPool())
    b.add("fc", Dense(classes))
    return ModelSpec.from_nodes((3, image_size, image_size), b.nodes, name=name)


def resnet18(classes: int = 1000, image_size: int = 224) -> ModelSpec:
    """ResNet-18 on ImageNet shapes (11.7 M parameters): for estimates and synthetic benchmarks."""
    return _imagenet("resnet18", (2, 2, 2, 2), False, classes, image_size)


def resnet50(classes: int = 1000, image_size: int = 224) -> ModelSpec:
    """ResNet-50 on ImageNet shapes (25.6 M parameters, the MLPerf image-classification model):
    for estimates and synthetic benchmarks."""
    return _imagenet("resnet50", (3, 4, 6, 3), True, classes, image_size)


def bert(
    vocab_size: int = 64, max_len: int = 32, dim: int = 64, heads: int = 4, blocks: int = 2, classes: int = 2
) -> ModelSpec:
    """A small BERT-style encoder: token + position embedding, post-norm blocks of
    bidirectional attention and a 4x GELU MLP (each ``layernorm(x + sublayer(x))``), then the
    mean over positions and class logits for the whole sequence."""
    b = _Builder()
    b.add("embed", Embedding(vocab_size, dim, max_len=max_len))
    for i in range(blocks):
        start = b.last
        b.add(f"b{i + 1}_attn", Attention(heads, causal=False))
        b.add(f"b{i + 1}_res1", Add(), [f"b{i + 1}_attn", start])
        mid = b.add(f"b{i + 1}_ln1", LayerNorm())
        b.add(f"b{i + 1}_fc1", Dense(4 * dim))
        b.add(f"b{i + 1}_gelu", GELU())
        b.add(f"b{i + 1}_fc2", Dense(dim))
        b.add(f"b{i + 1}_res2", Add(), [f"b{i + 1}_fc2", mid])
        b.add(f"b{i + 1}_ln2", LayerNorm())
    b.add("pool", GlobalAvgPool())
    b.add("head", Dense(classes))
    return ModelSpec.from_nodes((max_len,), b.nodes, input_dtype="int64", name="bert")
