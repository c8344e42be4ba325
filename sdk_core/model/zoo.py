"""Ready-made model specs: MLP, LeNet-5, a small GPT-style transformer, a CIFAR-style ResNet
and a small BERT-style encoder to train here, and the shapes of real large models (ResNet-18
and ResNet-50 on ImageNet shapes, GPT-2 small to XL, 7B- and 70B-shaped decoders) for
``sdk estimate`` and synthetic ``sdk bench`` runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import SpecError
from .files import FileError, read_text
from .graphs import bert, resnet, resnet18, resnet50
from .spec import (
    LAYER_TYPES,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2D,
    ModelSpec,
    TransformerBlock,
)


def mlp(
    input_dim: int = 64,
    hidden: Sequence[int] = (128, 64),
    classes: int = 10,
    activation: str = "relu",
    dropout: float = 0.0,
) -> ModelSpec:
    """A multi-layer perceptron on flat vectors; outputs logits."""
    act = LAYER_TYPES[activation]
    layers: list[Layer] = []
    for units in hidden:
        layers += [Dense(units), act()]
        if dropout:
            layers.append(Dropout(dropout))
    return ModelSpec(input_shape=(input_dim,), layers=layers + [Dense(classes)], name="mlp")


def lenet5(input_shape: Sequence[int] = (1, 32, 32), classes: int = 10, activation: str = "relu") -> ModelSpec:
    """LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, dense 120, 84, classes (logits)."""
    act = LAYER_TYPES[activation]
    return ModelSpec(
        input_shape=tuple(input_shape),
        name="lenet5",
        layers=[
            Conv2D(6, 5),
            act(),
            MaxPool2D(2),
            Conv2D(16, 5),
            act(),
            MaxPool2D(2),
            Flatten(),
            Dense(120),
            act(),
            Dense(84),
            act(),
            Dense(classes),
        ],
    )


def gpt(
    vocab_size: int = 64, max_len: int = 32, dim: int = 64, heads: int = 4, blocks: int = 2, dropout: float = 0.0
) -> ModelSpec:
    """A small GPT: token + position embedding, causal pre-norm blocks, final norm, logits."""
    layers: list[Layer] = [Embedding(vocab_size, dim, max_len=max_len)]
    layers += [TransformerBlock(heads, dropout=dropout) for _ in range(blocks)]
    layers += [LayerNorm(), Dense(vocab_size)]
    return ModelSpec(input_shape=(max_len,), input_dtype="int64", layers=layers, name="gpt")


def _decoder(name: str, vocab: int, context: int, dim: int, heads: int, blocks: int) -> Callable[[], ModelSpec]:
    def make() -> ModelSpec:
        return attrs.evolve(gpt(vocab, context, dim, heads, blocks), name=name)

    make.__doc__ = f"{name}: {blocks} blocks of width {dim}, {heads} heads, context {context}, vocabulary {vocab}."
    return make


# GPT-2 (Radford et al. 2019) with an untied output layer; decoders shaped like 7B/70B models
# (plain multi-head attention and a 4x GELU MLP: parameter counts near, not equal to, LLaMA's)
LARGE: dict[str, Callable[..., ModelSpec]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "gpt2": _decoder("gpt2", 50257, 1024, 768, 12, 12),
    "gpt2-medium": _decoder("gpt2-medium", 50257, 1024, 1024, 16, 24),
    "gpt2-large": _decoder("gpt2-large", 50257, 1024, 1280, 20, 36),
    "gpt2-xl": _decoder("gpt2-xl", 50257, 1024, 1600, 25, 48),
    "decoder-7b": _decoder("decoder-7b", 32000, 4096, 4096, 32, 32),
    "decoder-70b": _decoder("decoder-70b", 32000, 4096, 8192, 64, 80),
}

ZOO: dict[str, Callable[..., ModelSpec]] = {"mlp": mlp, "lenet5": lenet5, "gpt": gpt, "resnet": resnet, "bert": bert}
"""The models to train here; :data:`LARGE` holds the ones for estimates."""


def get(name: str, **kwargs: Any) -> ModelSpec:
    """A zoo model by name (:data:`ZOO`, or the large shapes of :data:`LARGE`)."""
    makers = {**ZOO, **LARGE}
    if name not in makers:
        raise SpecError(f"unknown model '{name}' (zoo: {', '.join(makers)})")
    return makers[name](**kwargs)


def resolve(model: str, image_size: int = 32) -> ModelSpec:
    """A spec from a zoo name or a ``.json`` spec file (what ``sdk train --model`` takes).

    ``image_size`` sets LeNet-5's and the ResNet's input to ``(1, image_size, image_size)``.
    """
    if model.endswith(".json") or Path(model).exists():
        try:
            text = read_text(model, "spec")
        except FileError as exc:
            raise SpecError(str(exc)) from None
        return ModelSpec.from_json(text)
    if model in ("lenet5", "resnet"):
        return ZOO[model](input_shape=(1, image_size, image_size))
    return get(model)
