"""What every framework's key/value-cache decoder (``sdk_make_decoder``) shares: which layers
of a decoder spec do what, and the host side of the cache (input checks, the next slot)."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from ..errors import SdkError, SpecError
from ..model import spec as S
from ..model.spec import ModelSpec


@attrs.frozen
class DecoderLayout:
    """Indices into ``spec.layers``: the token + position embedding, the causal transformer
    blocks after it, and the layers that follow them (norm and logits), applied per position."""

    embedding: int
    blocks: tuple[int, ...]
    tail: tuple[int, ...]


def decoder_layout(spec: ModelSpec) -> DecoderLayout:
    """The layout of a GPT-shaped spec (the zoo ``gpt`` family), or a SpecError saying why not."""
    layers = spec.layers
    if spec.is_graph or not layers or not isinstance(layers[0], S.Embedding) or not layers[0].max_len:
        raise SpecError(f"model '{spec.name}' is not a decoder: it must start with an Embedding that has a max_len")
    blocks = []
    for i, layer in enumerate(layers[1:], 1):
        if not isinstance(layer, S.TransformerBlock):
            break
        if not layer.causal:
            raise SpecError(f"model '{spec.name}' is not a decoder: layer {i} (transformer_block) is not causal")
        blocks.append(i)
    tail = tuple(range(len(blocks) + 1, len(layers)))
    if not blocks or not all(isinstance(layers[i], (S.LayerNorm, S.Dense)) for i in tail):
        raise SpecError(
            f"model '{spec.name}' is not a decoder: it needs transformer blocks, then only layernorm and dense layers"
        )
    return DecoderLayout(0, tuple(blocks), tail)


class Slots:
    """The host side of a decoder's cache: checks the ids handed to ``prefill`` and ``step``
    and counts the slots filled (``pos``: where the next token goes). A spec that is no
    decoder, or a cache longer than its context, is refused here."""

    def __init__(self, spec: ModelSpec, batch: int, capacity: int) -> None:
        self.layout = decoder_layout(spec)
        first: Any = spec.layers[0]  # an Embedding: decoder_layout checked it
        context = first.max_len
        if capacity > context:
            raise SpecError(f"'capacity' {capacity} exceeds the model's context of {context} positions")
        self.batch, self.capacity, self.vocab = batch, capacity, first.vocab_size
        self.pos = 0

    def _ids(self, ids: Any, ndim: int, what: str) -> np.ndarray:
        x = np.asarray(ids)
        if x.ndim != ndim or x.shape[0] != self.batch or not np.issubdtype(x.dtype, np.integer):
            shape = f"({self.batch},)" if ndim == 1 else f"({self.batch}, T)"
            raise SpecError(f"{what} must be integer token ids of shape {shape} (got {x.dtype} {x.shape})")
        if x.size and (x.min() < 0 or x.max() >= self.vocab):
            bad = x.min() if x.min() < 0 else x.max()
            raise SpecError(f"token id {bad} is outside the vocabulary [0, {self.vocab})")
        return x.astype(np.int32)

    def prefill(self, ids: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        """``ids`` as int32 ``(batch, T)`` and each row's first real slot ``T - length`` (int32)."""
        x = self._ids(ids, 2, "prefill ids")
        t = x.shape[1]
        if not 1 <= t <= self.capacity:
            raise SpecError(f"a prompt of {t} slots does not fit the cache's {self.capacity}")
        n = np.asarray(lengths)
        if n.shape != (self.batch,) or not np.issubdtype(n.dtype, np.integer) or n.min() < 1 or n.max() > t:
            raise SpecError(f"'lengths' must be {self.batch} ints in [1, {t}] (got {n.tolist()})")
        self.pos = t
        return x, (t - n).astype(np.int32)

    def step(self, ids: Any) -> tuple[np.ndarray, int]:
        """``ids`` as int32 ``(batch,)`` and the slot they go to."""
        if self.pos == 0:
            raise SdkError("step() before prefill(): the cache is empty")
        if self.pos >= self.capacity:
            raise SdkError(f"the cache is full: all {self.capacity} slots hold tokens")
        x = self._ids(ids, 1, "step ids")
        self.pos += 1
        return x, self.pos - 1
