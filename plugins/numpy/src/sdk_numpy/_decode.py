"""The reference key/value-cache decoder (``sdk_make_decoder``) of the zoo GPT family: the
model's own ops and weights (its ``params`` dict, read at every call), plus preallocated
key and value arrays ``(layers, batch, heads, capacity, head_dim)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk_core import DecodeRequest
from sdk_core.plugins.decoding import Slots

from ._layers import softmax


class Decoder:
    """``prefill(ids, lengths)`` then ``step(ids)``; both return float32 ``(batch, vocab)``
    logits of each row's last token."""

    def __init__(self, request: DecodeRequest) -> None:
        model = self.model = request.model
        self.slots = Slots(request.spec, request.batch, request.capacity)
        layout = self.slots.layout
        self.embedding = model.ops[layout.embedding]
        self.blocks = [model.ops[i] for i in layout.blocks]
        self.tail = [model.ops[i] for i in layout.tail]  # the final norm and the logits
        attn = self.blocks[0].attn_path[1]
        dim = request.spec.layers[0].dim  # type: ignore[attr-defined]  # an Embedding: checked by decoder_layout
        shape = (len(self.blocks), request.batch, attn.h, request.capacity, dim // attn.h)
        self.keys, self.values = np.zeros(shape, model.dtype), np.zeros(shape, model.dtype)
        self.valid = np.zeros((request.batch, request.capacity), bool)  # slots holding a real token
        self.positions = np.zeros(request.batch, np.int64)  # the next token's position in each row

    def prefill(self, ids: Any, lengths: Any) -> np.ndarray:
        ids, first = self.slots.prefill(ids, lengths)
        t = ids.shape[1]
        self.valid[:] = False
        self.valid[:, :t] = np.arange(t) >= first[:, None]
        self.positions = t - first.astype(np.int64)
        return self._run(ids, np.maximum(np.arange(t) - first[:, None], 0), 0)

    def step(self, ids: Any) -> np.ndarray:
        ids, slot = self.slots.step(ids)
        self.valid[:, slot] = True
        out = self._run(ids[:, None], self.positions[:, None], slot)
        self.positions += 1
        return out

    def _run(self, ids: np.ndarray, positions: np.ndarray, start: int) -> np.ndarray:
        """Run ``ids`` (at ``positions``) into slots ``start:start+t``; the last one's logits."""
        p, emb = self.model.params, self.embedding
        x = p[emb.prefix + "weight"][ids] + p[emb.prefix + "position"][positions]
        end = start + ids.shape[1]
        slots = np.arange(end)
        queries = np.arange(start, end)[:, None]
        # a query sees the row's real slots up to its own; a pad slot sees itself (never read)
        mask = (self.valid[:, None, :end] & (slots <= queries)) | (slots == queries)  # (batch, t, end)
        for i, block in enumerate(self.blocks):
            ln1, attn, _ = block.attn_path
            ln2, fc1, gelu, fc2, _ = block.mlp_path
            h = ln1.forward(p, x, False)
            q, k, v = (attn._split(attn.proj[n].forward(p, h, False)) for n in "qkv")
            self.keys[i, :, :, start:end], self.values[i, :, :, start:end] = k, v
            scale = np.asarray(1.0 / np.sqrt(q.shape[-1]), x.dtype)
            scores = (q @ self.keys[i, :, :, :end].transpose(0, 1, 3, 2)) * scale
            a = softmax(np.where(mask[:, None], scores, -np.inf))
            ctx = (a @ self.values[i, :, :, :end]).transpose(0, 2, 1, 3).reshape(x.shape)
            x = x + attn.proj["o"].forward(p, ctx, False)
            x = x + fc2.forward(p, gelu.forward(p, fc1.forward(p, ln2.forward(p, x, False), False), False), False)
        x = x[:, -1]
        for op in self.tail:
            x = op.forward(p, x, False)
        return np.asarray(x, np.float32)


def decoder(request: DecodeRequest) -> Decoder:
    return Decoder(request)
