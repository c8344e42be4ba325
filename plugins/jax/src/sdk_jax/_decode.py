"""The key/value-cache decoder: a jitted prefill, and one jitted decode step that writes each
new key and value with ``lax.dynamic_update_slice`` at a traced slot, so decoding compiles once.

The cache is two arrays ``(blocks, batch, heads, capacity, head_dim)``; the step donates them,
so XLA updates them in place. The weights are the model's own arrays (``JaxModel.local``: what
predict reads), read at every call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sdk_core import ModelSpec
from sdk_core.plugins.decoding import Slots, decoder_layout
from sdk_core.plugins.requests import DecodeRequest

from ._layers import _layernorm, _linear, layer_fn


class Decoder:
    """``prefill(ids, lengths)`` and ``step(ids)`` (see ``sdk_make_decoder``)."""

    def __init__(self, request: DecodeRequest) -> None:
        self.model, self.slots = request.model, Slots(request.spec, request.batch, request.capacity)
        self._prefill, self._step = _compiled(request.spec, request.batch, request.capacity)
        self.keys = self.values = self.starts = None

    def prefill(self, ids, lengths) -> np.ndarray:
        ids, starts = self.slots.prefill(ids, lengths)
        t = ids.shape[1]
        # right-padded to a power of two (at most the capacity): prefill compiles once per
        # bucket, not per prompt length; causal attention keeps the padding out of the prompt,
        # and each padded slot is overwritten by its step before anything attends to it
        padded = np.zeros((len(ids), min(self.slots.capacity, 1 << (t - 1).bit_length())), np.int32)
        padded[:, :t] = ids
        self.starts = starts
        logits, self.keys, self.values = self._prefill(self.model.local()[0], padded, starts, t - 1)
        return np.asarray(logits, np.float32)

    def step(self, ids) -> np.ndarray:
        ids, pos = self.slots.step(ids)
        logits, self.keys, self.values = self._step(
            self.model.local()[0], self.keys, self.values, ids, pos, self.starts
        )
        return np.asarray(logits, np.float32)


@functools.lru_cache(maxsize=8)
def _compiled(spec: ModelSpec, batch: int, cap: int) -> tuple[Callable, Callable]:
    """The jitted prefill and step for a spec and cache shape, shared by the decoders made for
    them (a new decoder per prompt batch compiles nothing)."""
    layout = decoder_layout(spec)
    names = spec.node_names
    emb = f"{names[layout.embedding]}."
    blocks = [(f"{names[i]}.", spec.layers[i]) for i in layout.blocks]
    tail = [layer_fn(names[i], spec.layers[i]) for i in layout.tail]
    heads, dim = blocks[0][1].num_heads, spec.layers[0].dim
    dh = dim // heads
    shape = (len(blocks), batch, heads, cap, dh)

    def split(params, p, n, x):  # (b, t, d) -> (b, heads, t, dh)
        b, t, _ = x.shape
        return _linear(params, f"{p}attn.{n}.", x).reshape(b, t, heads, dh).transpose(0, 2, 1, 3)

    def run(params, x, allowed, write):
        """The logits of ``x`` (b, t, d): the blocks' keys and values go to the cache
        (``write``), queries attend to the cached slots where ``allowed`` (b, t, capacity)."""
        for layer, (p, _) in enumerate(blocks):
            h = _layernorm(params, p + "ln1.", x, 1e-5)
            k_all, v_all = write(layer, split(params, p, "k", h), split(params, p, "v", h))
            scores = split(params, p, "q", h) @ k_all.transpose(0, 1, 3, 2) / math.sqrt(dh)
            scores = jnp.where(allowed[:, None], scores, -jnp.inf)
            ctx = (jax.nn.softmax(scores, axis=-1) @ v_all).transpose(0, 2, 1, 3).reshape(x.shape)
            x = x + _linear(params, p + "attn.o.", ctx)
            h = _linear(params, p + "fc1.", _layernorm(params, p + "ln2.", x, 1e-5))
            x = x + _linear(params, p + "fc2.", jax.nn.gelu(h, approximate=True))
        for fn in tail:
            x, _ = fn(params, {}, x, False, None)
        return x

    def embed(params, ids, positions):
        return params[emb + "weight"][ids] + params[emb + "position"][jnp.maximum(positions, 0)]

    @jax.jit
    def prefill(params, ids, starts, last):
        t = ids.shape[1]
        i, j = jnp.arange(t)[:, None], jnp.arange(cap)[None]
        # query slot i sees key slot j <= i from the row's first real slot on; a pad slot
        # sees itself only (its outputs stay finite and are never read)
        allowed = ((j <= i) & (j >= starts[:, None, None])) | (j == i)
        cache = [jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)]

        def write(layer, k, v):
            cache[0] = cache[0].at[layer, :, :, :t].set(k)
            cache[1] = cache[1].at[layer, :, :, :t].set(v)
            return cache[0][layer], cache[1][layer]

        x = embed(params, ids, jnp.arange(t)[None] - starts[:, None])
        out = lax.dynamic_index_in_dim(run(params, x, allowed, write), last, axis=1, keepdims=False)
        return out, cache[0], cache[1]  # the logits of the prompt's last slot

    @functools.partial(jax.jit, donate_argnums=(1, 2))
    def step(params, keys, values, ids, pos, starts):
        j = jnp.arange(cap)[None]
        allowed = ((j <= pos) & (j >= starts[:, None]))[:, None]
        cache = [keys, values]

        def write(layer, k, v):
            at = (layer, 0, 0, pos, 0)
            cache[0] = lax.dynamic_update_slice(cache[0], k[None], at)
            cache[1] = lax.dynamic_update_slice(cache[1], v[None], at)
            return cache[0][layer], cache[1][layer]

        x = embed(params, ids[:, None], (pos - starts)[:, None])
        return run(params, x, allowed, write)[:, 0], cache[0], cache[1]

    return prefill, step
