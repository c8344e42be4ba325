"""The key/value-cache decoder: a ``mindspore.jit`` prefill and a ``mindspore.jit`` decode step
(graph-compiled from PyNative, as the training step is). The slot is a tensor, so decoding
compiles once.

The cache is a tuple of ``(batch, heads, capacity, head_dim)`` tensors per block, keys then
values, passed to the step and returned by it; the new slot is written with a one-hot select.
The layers are the model's own cells (their weights as they are at every call); the
functions are kept on the model, one pair per capacity, so a new decoder compiles nothing.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

from sdk_core.plugins.decoding import DecoderLayout, Slots
from sdk_core.plugins.requests import DecodeRequest


class Decoder:
    """``prefill(ids, lengths)`` and ``step(ids)`` (see ``sdk_make_decoder``)."""

    def __init__(self, request: DecodeRequest) -> None:
        self.slots = Slots(request.spec, request.batch, request.capacity)
        made = vars(request.model).setdefault("_decoders", {})  # the model's compiled pairs, by capacity
        if request.capacity not in made:
            made[request.capacity] = _compiled(request.model.net, self.slots.layout, request.capacity)
        self._prefill, self._step = made[request.capacity]
        self.starts = self.keys = self.values = None

    def prefill(self, ids, lengths) -> np.ndarray:
        ids, starts = self.slots.prefill(ids, lengths)
        self.starts = Tensor(starts)
        logits, self.keys, self.values = self._prefill(Tensor(ids), self.starts)
        return logits.asnumpy()

    def step(self, ids) -> np.ndarray:
        ids, pos = self.slots.step(ids)
        logits, self.keys, self.values = self._step(
            Tensor(ids), Tensor(np.int32(pos)), self.starts, ms.mutable(self.keys), ms.mutable(self.values)
        )
        return logits.asnumpy()


def _compiled(net, layout: DecoderLayout, cap: int) -> tuple:
    """The jitted prefill and step of the model's cells for ``cap`` slots (a batch size
    compiles on first use)."""
    emb = net[layout.embedding]
    blocks = tuple(net[i] for i in layout.blocks)
    tail = tuple(net[i] for i in layout.tail)
    slot = Tensor(np.arange(cap, dtype=np.int32))

    def split(block, proj, h):  # (b, t, d) -> (b, heads, t, dh)
        b, t, d = h.shape
        return block.attn._split(proj(h), b, t, d)

    def attend(block, x, q, keys, values, allowed):
        scores = ops.matmul(q, keys.transpose(0, 1, 3, 2)) * block.attn.scale
        scores = ops.masked_fill(scores, ops.logical_not(allowed), float("-inf"))
        b, n, d = x.shape
        ctx = ops.matmul(ops.softmax(scores, -1), values).transpose(0, 2, 1, 3).reshape(b, n, d)
        x = x + block.attn.o(ctx)
        return x + block.fc2(block.gelu(block.fc1(block.ln2(x))))

    def head(x):
        for cell in tail:
            x = cell(x)
        return x[:, -1]

    def embed(ids, positions):
        return ops.gather(emb.weight, ids, 0) + ops.gather(emb.position, ops.maximum(positions, 0), 0)

    def prefill(ids, starts):
        b, t = ids.shape
        i, j = ops.arange(t).reshape(t, 1), ops.arange(t).reshape(1, t)
        # query slot i sees key slot j <= i from the row's first real slot on; a pad slot
        # sees itself only (its outputs stay finite and are never read)
        allowed = ops.logical_or(ops.logical_and(j <= i, j >= starts.reshape(b, 1, 1)), j == i)
        allowed = allowed.reshape(b, 1, t, t)
        x = embed(ids, ops.arange(t).reshape(1, t) - starts.reshape(b, 1))
        keys, values = (), ()
        for block in blocks:
            h = block.ln1(x)
            k, v = split(block, block.attn.k, h), split(block, block.attn.v, h)
            x = attend(block, x, split(block, block.attn.q, h), k, v, allowed)
            if t < cap:
                pad = ops.zeros((b, k.shape[1], cap - t, k.shape[3]), k.dtype)
                k, v = ops.cat((k, pad), 2), ops.cat((v, pad), 2)
            keys, values = keys + (k,), values + (v,)
        return head(x), keys, values

    def step(ids, pos, starts, keys, values):
        b = ids.shape[0]
        at = (slot == pos).reshape(1, 1, cap, 1)
        allowed = ops.logical_and(slot <= pos, slot >= starts.reshape(b, 1)).reshape(b, 1, 1, cap)
        x = embed(ids.reshape(b, 1), (pos - starts).reshape(b, 1))
        new_keys, new_values = (), ()
        for block, k_all, v_all in zip(blocks, keys, values):  # noqa: B905 (MindSpore graphs know no strict=)
            h = block.ln1(x)
            k_all = ops.where(at, split(block, block.attn.k, h), k_all)
            v_all = ops.where(at, split(block, block.attn.v, h), v_all)
            x = attend(block, x, split(block, block.attn.q, h), k_all, v_all, allowed)
            new_keys, new_values = new_keys + (k_all,), new_values + (v_all,)
        return head(x), new_keys, new_values

    return ms.jit(prefill), ms.jit(step)
