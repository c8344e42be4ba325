"""The key/value-cache decoder (``sdk_make_decoder``) of the zoo GPT family: the model's own
modules and parameters, a cache preallocated at its full capacity, and separate prefill and
step functions. The step has static shapes (it writes its keys and values at a slot tensor
with ``index_copy_`` and attends over the whole cache through a boolean mask), so
``torch.compile`` can trace it once; ``SDK_TORCH_COMPILE_DECODE=1`` compiles it (off by
default: on the CPU the compile costs seconds and the eager step is as fast for small models).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sdk_core import DecodeRequest
from sdk_core.plugins.decoding import Slots

COMPILE = "SDK_TORCH_COMPILE_DECODE"


class Decoder:
    """``prefill(ids, lengths)`` then ``step(ids)``; both return float32 numpy
    ``(batch, vocab)`` logits of each row's last token."""

    def __init__(self, request: DecodeRequest) -> None:
        module = request.model.module
        module.eval()
        self.slots = Slots(request.spec, request.batch, request.capacity)
        layout = self.slots.layout
        self.embedding = module[layout.embedding]
        self.blocks = [module[i] for i in layout.blocks]
        self.tail = [module[i] for i in layout.tail]  # the final norm and the logits
        self.device = request.model.device
        self.batch, self.capacity = request.batch, request.capacity
        self.heads = self.blocks[0].attn.heads
        dim = request.spec.layers[0].dim
        shape = (len(self.blocks), self.batch, self.heads, self.capacity, dim // self.heads)
        dtype = self.embedding.weight.dtype
        self.keys = torch.empty(shape, dtype=dtype, device=self.device)
        self.values = torch.empty(shape, dtype=dtype, device=self.device)
        self.valid = torch.zeros(self.batch, self.capacity, dtype=torch.bool, device=self.device)
        self.positions = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)  # the step's slot
        self._step = torch.compile(self._step_eager, dynamic=False) if os.environ.get(COMPILE) == "1" else None
        self._step = self._step or self._step_eager

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def _blocks(self, x: torch.Tensor, mask: torch.Tensor, write: Any, end: int | None) -> torch.Tensor:
        """The blocks on ``x``; ``write(i, k, v)`` stores layer ``i``'s keys and values, which
        every query then reads from the cache's first ``end`` slots (all: ``None``)."""
        b, t, d = x.shape
        for i, block in enumerate(self.blocks):
            h = block.ln1(x)
            attn = block.attn
            write(i, self._split(attn.k(h)), self._split(attn.v(h)))
            keys, values = self.keys[i, :, :, :end], self.values[i, :, :, :end]
            out = F.scaled_dot_product_attention(self._split(attn.q(h)), keys, values, attn_mask=mask)
            x = x + attn.o(out.transpose(1, 2).reshape(b, t, d))
            x = x + block.fc2(F.gelu(block.fc1(block.ln2(x)), approximate="tanh"))
        x = x[:, -1]
        for layer in self.tail:
            x = layer(x)
        return x

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding.weight) + self.embedding.position[positions]

    @torch.inference_mode()
    def prefill(self, ids: Any, lengths: Any) -> np.ndarray:
        ids, first = self.slots.prefill(ids, lengths)
        t = ids.shape[1]
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        first = torch.as_tensor(first, dtype=torch.long, device=self.device)[:, None]
        slots = torch.arange(t, device=self.device)
        self.valid.zero_()
        self.valid[:, :t] = slots >= first
        # the rest of the cache is zeroed: a step reads every slot (masked), and a NaN left in
        # uninitialised memory would survive its zero attention weight
        self.keys[:, :, :, t:].zero_()
        self.values[:, :, :, t:].zero_()
        # a query sees its row's real slots up to its own; a pad slot sees itself (never read)
        causal = slots[None, :] <= slots[:, None]
        mask = (self.valid[:, None, :t] & causal) | torch.eye(t, dtype=torch.bool, device=self.device)
        x = self._embed(ids, (slots - first).clamp(min=0))

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> None:
            self.keys[i, :, :, :t], self.values[i, :, :, :t] = k, v

        logits = self._blocks(x, mask[:, None], write, t)
        self.positions.copy_(t - first[:, 0])
        return logits.float().cpu().numpy()

    @torch.inference_mode()
    def step(self, ids: Any) -> np.ndarray:
        ids, slot = self.slots.step(ids)
        self.slot.fill_(slot)
        logits = self._step(torch.as_tensor(ids[:, None], dtype=torch.long, device=self.device), self.slot)
        return logits.float().cpu().numpy()

    def _step_eager(self, ids: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """One token per row into cache slot ``slot`` (a one-element tensor): static shapes."""
        self.valid.index_fill_(1, slot, True)
        x = self._embed(ids, self.positions[:, None])

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> None:
            self.keys[i].index_copy_(2, slot, k)
            self.values[i].index_copy_(2, slot, v)

        logits = self._blocks(x, self.valid[:, None, None, :], write, None)
        self.positions += 1
        return logits


def decoder(request: DecodeRequest) -> Decoder:
    return Decoder(request)
