"""The key/value-cache decoder: a ``tf.function`` prefill and a ``tf.function`` decode step,
each with a fixed input signature (the slot is a tensor), so decoding traces once.

The cache is a ``(batch, heads, capacity, head_dim)`` tensor per block, keys and values,
passed to the step and returned by it with the new slot written (``tf.tensor_scatter_nd_update``).
The layers are the model's own Keras layers (their weights as they are at every call); the
functions are kept on the model, one pair per batch and capacity, so a new decoder traces nothing.
"""

from __future__ import annotations

import math

import numpy as np

from sdk_core import ModelSpec
from sdk_core.plugins.decoding import DecoderLayout, Slots
from sdk_core.plugins.requests import DecodeRequest

from ._framework import tf
from ._layers import gelu


class Decoder:
    """``prefill(ids, lengths)`` and ``step(ids)`` (see ``sdk_make_decoder``)."""

    def __init__(self, request: DecodeRequest) -> None:
        self.slots = Slots(request.spec, request.batch, request.capacity)
        made = vars(request.model).setdefault("_decoders", {})  # the model's compiled pairs, by shape
        key = (request.batch, request.capacity)
        if key not in made:
            made[key] = _compiled(request.model, request.spec, self.slots.layout, *key)
        self._prefill, self._step = made[key]
        # the traces themselves: a tf.function's own dispatch cost ~3x a small model's step
        self._run_prefill, self._run_step = (f.get_concrete_function() for f in made[key])
        self.starts = self.keys = self.values = None

    def prefill(self, ids, lengths) -> np.ndarray:
        ids, starts = self.slots.prefill(ids, lengths)
        self.starts = tf.constant(starts)
        logits, self.keys, self.values = self._run_prefill(tf.constant(ids), self.starts)
        return logits.numpy()

    def step(self, ids) -> np.ndarray:
        ids, pos = self.slots.step(ids)
        logits, self.keys, self.values = self._run_step(
            tf.constant(ids), tf.constant(pos, tf.int32), self.starts, self.keys, self.values
        )
        return logits.numpy()


def _compiled(model, spec: ModelSpec, layout: DecoderLayout, b: int, cap: int) -> tuple:
    """The prefill and step ``tf.function`` of the model's layers for ``b`` rows of ``cap`` slots."""
    layers = model.module.blocks
    emb, blocks, tail = layers[layout.embedding], [layers[i] for i in layout.blocks], [layers[i] for i in layout.tail]
    heads, dim = spec.layers[layout.blocks[0]].num_heads, spec.layers[0].dim
    dh = dim // heads
    rows = tf.repeat(tf.range(b), heads)
    cols = tf.tile(tf.range(heads), [b])

    def split(proj, x):  # (b, t, d) -> (b, heads, t, dh)
        return tf.transpose(tf.reshape(proj(x), (b, -1, heads, dh)), (0, 2, 1, 3))

    def run(x, allowed, write):
        """The blocks on ``x`` (b, t, d), their keys and values put in the cache by ``write``;
        queries attend to the cached slots where ``allowed`` (b, t, cap)."""
        keys, values = [], []
        for block in blocks:
            h = block.ln1(x)
            k, v = write(split(block.attn.proj["k"], h), split(block.attn.proj["v"], h), len(keys))
            keys.append(k)
            values.append(v)
            scores = tf.matmul(split(block.attn.proj["q"], h), k, transpose_b=True) / math.sqrt(dh)
            scores = tf.where(allowed[:, None], scores, -math.inf)
            ctx = tf.transpose(tf.matmul(tf.nn.softmax(scores, -1), v), (0, 2, 1, 3))
            x = x + block.attn.proj["o"](tf.reshape(ctx, (b, -1, dim)))
            x = x + block.fc2(gelu(block.fc1(block.ln2(x))))
        for fn in tail:
            x = fn(x)
        return x[:, -1], tuple(keys), tuple(values)

    def embed(ids, positions):
        return tf.gather(emb.table, ids) + tf.gather(emb.position, tf.maximum(positions, 0))

    rows_of = tf.TensorSpec((b,), tf.int32)
    cache = (tf.TensorSpec((b, heads, cap, dh), tf.float32),) * len(blocks)

    @tf.function(input_signature=[tf.TensorSpec((b, None), tf.int32), rows_of])
    def prefill(ids, starts):
        with model.on_device():
            t = tf.shape(ids)[1]
            i, j = tf.range(t)[:, None], tf.range(cap)[None]
            # query slot i sees key slot j <= i from the row's first real slot on; a pad
            # slot sees itself only (its outputs stay finite and are never read)
            allowed = ((j <= i) & (j >= starts[:, None, None])) | (j == i)
            pad = [[0, 0], [0, 0], [0, cap - t], [0, 0]]
            return run(
                embed(ids, tf.range(t)[None] - starts[:, None]),
                allowed,
                lambda k, v, _: (tf.pad(k, pad), tf.pad(v, pad)),
            )

    @tf.function(input_signature=[rows_of, tf.TensorSpec((), tf.int32), rows_of, cache, cache])
    def step(ids, pos, starts, keys, values):
        with model.on_device():
            j = tf.range(cap)[None]
            allowed = ((j <= pos) & (j >= starts[:, None]))[:, None]
            at = tf.stack([rows, cols, tf.fill([b * heads], pos)], 1)  # (row, head, slot) of each new vector

            def write(k, v, layer):
                return (
                    tf.tensor_scatter_nd_update(keys[layer], at, tf.reshape(k, (b * heads, dh))),
                    tf.tensor_scatter_nd_update(values[layer], at, tf.reshape(v, (b * heads, dh))),
                )

            return run(embed(ids[:, None], (pos - starts)[:, None]), allowed, write)

    return prefill, step
