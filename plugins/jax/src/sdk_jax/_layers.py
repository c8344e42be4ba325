"""A pure function per layer: ``apply(params, state, x, training, key) -> (y, state)``.

``params`` and ``state`` (batchnorm running statistics) are dicts keyed by canonical names,
so the canonical layout is the native one.

Activations with 4 dimensions run channels-last (NHWC) inside the network, as XLA's cpu
convolutions and pools do: an NCHW graph pays a transpose around each convolution, and
reduce_window max pooling a select_and_scatter in backward (LeNet-5's step was 15 % slower).
:func:`model_fn` turns the images to NHWC on entry and a 4-d output back on exit; the layers
whose meaning depends on the axis order (dense, softmax, layernorm, ... over the width) see
the canonical NCHW.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sdk_core import ModelSpec
from sdk_core.model import spec as S

Apply = Callable[..., tuple[jax.Array, dict]]


def _linear(params, prefix, x, bias=True):
    y = x @ params[prefix + "weight"]
    return y + params[prefix + "bias"] if bias else y


def _dropout(x, rate, training, key):
    if not training or rate == 0:
        return x
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(key, keep, x.shape), x / keep, 0).astype(x.dtype)


def _layernorm(params, prefix, x, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps) * params[prefix + "weight"] + params[prefix + "bias"]


def _attention(params, prefix, x, heads, causal):
    b, t, d = x.shape
    split = lambda n: _linear(params, f"{prefix}{n}.", x).reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)
    q, k, v = split("q"), split("k"), split("v")
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // heads)
    if causal:
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
    ctx = jax.nn.softmax(scores, axis=-1) @ v
    return _linear(params, f"{prefix}o.", ctx.transpose(0, 2, 1, 3).reshape(b, t, d))


def _nhwc(x: jax.Array) -> jax.Array:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _nchw(x: jax.Array) -> jax.Array:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def _pool(x, k, s, op):
    """NHWC pooling; windows that tile the image (stride = size) as a reshape and a max or
    mean, whose backward is elementwise (reduce_window's is a slow select_and_scatter)."""
    if s == k:
        n, h, w, c = x.shape
        tiles = x[:, : h // k * k, : w // k * k].reshape(n, h // k, k, w // k, k, c)
        return tiles.max((2, 4)) if op == "max" else tiles.mean((2, 4))
    init, fn = (-jnp.inf, lax.max) if op == "max" else (0.0, lax.add)
    y = lax.reduce_window(x, np.asarray(init, x.dtype), fn, (1, k, k, 1), (1, s, s, 1), "VALID")
    return y if op == "max" else y / (k * k)


def _batchnorm(layer: S.BatchNorm, p: str):
    def apply(params, state, x, training, key):
        axes = (0, 1, 2) if x.ndim == 4 else (0,) + tuple(range(2, x.ndim))  # NHWC images
        shape = (1, 1, 1, -1) if x.ndim == 4 else (1, -1) + (1,) * (x.ndim - 2)
        if training:
            mean, var = x.mean(axes), x.var(axes)
            n = x.size // mean.size
            m = layer.momentum
            state = {
                **state,
                p + "running_mean": (1 - m) * state[p + "running_mean"] + m * mean,
                p + "running_var": (1 - m) * state[p + "running_var"] + m * var * n / max(n - 1, 1),
            }
        else:
            mean, var = state[p + "running_mean"], state[p + "running_var"]
        y = (x - mean.reshape(shape)) * lax.rsqrt(var.reshape(shape) + layer.eps)
        return y * params[p + "weight"].reshape(shape) + params[p + "bias"].reshape(shape), state

    return apply


def _block(layer: S.TransformerBlock, p: str):
    def apply(params, state, x, training, key):
        k1, k2 = jax.random.split(key)
        h = _attention(params, p + "attn.", _layernorm(params, p + "ln1.", x, 1e-5), layer.num_heads, layer.causal)
        x = x + _dropout(h, layer.dropout, training, k1)
        h = _linear(params, p + "fc1.", _layernorm(params, p + "ln2.", x, 1e-5))
        h = _linear(params, p + "fc2.", jax.nn.gelu(h, approximate=True))
        return x + _dropout(h, layer.dropout, training, k2), state

    return apply


def _stateless(fn):
    return lambda params, state, x, training, key: (fn(params, x, training, key), state)


def _channels_first(fn: Apply) -> Apply:
    """``fn`` seeing a 4-d input in the canonical NCHW (its output back to NHWC)."""

    def apply(params, state, x, training, key):
        y, state = fn(params, state, _nchw(x), training, key)
        return _nhwc(y), state

    return apply


LAYOUT_FREE = {"conv2d", "max_pool2d", "avg_pool2d", "batchnorm", "dropout", "add", "concat"}
LAYOUT_FREE |= {"global_avg_pool", "flatten", "relu", "tanh", "sigmoid", "gelu"}
"""Layer types that take NHWC images as they are: elementwise, or written for NHWC here."""


def layer_fn(name: str, layer: S.Layer) -> Apply:
    """Node ``name``'s function (4-d activations NHWC); a merge layer's ``x`` is the list of its inputs."""
    fn = _layer_fn(name, layer)
    return fn if layer.type in LAYOUT_FREE else _channels_first(fn)


def _layer_fn(name: str, layer: S.Layer) -> Apply:
    p = f"{name}."
    if isinstance(layer, S.Dense):
        return _stateless(lambda params, x, tr, k: _linear(params, p, x, layer.bias))
    if isinstance(layer, S.Conv2D):

        def conv(params, x, tr, k):
            pad = layer.padding
            y = lax.conv_general_dilated(
                x,
                params[p + "weight"],
                (layer.stride,) * 2,
                [(pad, pad)] * 2,
                dimension_numbers=("NHWC", "OIHW", "NHWC"),
            )
            return y + params[p + "bias"] if layer.bias else y

        return _stateless(conv)
    if isinstance(layer, (S.MaxPool2D, S.AvgPool2D)):
        op = "max" if isinstance(layer, S.MaxPool2D) else "avg"
        return _stateless(lambda params, x, tr, k: _pool(x, layer.pool_size, layer.step, op))
    if isinstance(layer, S.BatchNorm):
        return _batchnorm(layer, p)
    if isinstance(layer, S.LayerNorm):
        return _stateless(lambda params, x, tr, k: _layernorm(params, p, x, layer.eps))
    if isinstance(layer, S.Dropout):
        return _stateless(lambda params, x, tr, k: _dropout(x, layer.rate, tr, k))
    if isinstance(layer, S.Embedding):

        def embed(params, x, tr, k):
            y = params[p + "weight"][x]
            return y + params[p + "position"][: x.shape[1]] if layer.max_len else y

        return _stateless(embed)
    if isinstance(layer, S.Attention):
        return _stateless(lambda params, x, tr, k: _attention(params, p, x, layer.num_heads, layer.causal))
    if isinstance(layer, S.TransformerBlock):
        return _block(layer, p)
    simple = {
        "add": lambda xs: sum(xs[1:], xs[0]),
        "concat": lambda xs: jnp.concatenate(xs, axis=-1),  # channels of NHWC images, features otherwise
        "global_avg_pool": lambda x: x.mean((1, 2)) if x.ndim == 4 else x.mean(1),
        "flatten": lambda x: _nchw(x).reshape(x.shape[0], -1),  # the canonical (C, H, W) order
        "relu": jax.nn.relu,
        "tanh": jnp.tanh,
        "sigmoid": jax.nn.sigmoid,
        "gelu": lambda x: jax.nn.gelu(x, approximate=True),
        "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    }
    fn = simple[layer.type]
    return _stateless(lambda params, x, tr, k: fn(x))


def model_fn(spec: ModelSpec, remat: bool = False) -> Apply:
    """The whole network as one pure function; with ``remat``, each transformer block is
    wrapped in ``jax.checkpoint``: its insides are recomputed during backward. A graph spec's
    nodes read the outputs ``spec.sources`` names (``-1``: the model's input)."""
    from ._ops import op_fn  # operator nodes; _ops builds on this module's layout helpers

    names = spec.node_names
    fns = [op_fn(spec, i) if isinstance(l, S.Op) else layer_fn(names[i], l) for i, l in enumerate(spec.layers)]
    if remat:
        fns = [
            jax.checkpoint(fn, static_argnums=(3,)) if isinstance(l, S.TransformerBlock) else fn
            for fn, l in zip(fns, spec.layers, strict=True)
        ]
    if spec.is_graph:
        return _graph_fn(fns, spec)

    def apply(params, state, x, training, key):
        x = _nhwc(x)
        for i, fn in enumerate(fns):
            x, state = fn(params, state, x, training, jax.random.fold_in(key, i))
        return _nchw(x), state

    return apply


def _graph_fn(fns: list[Apply], spec: ModelSpec) -> Apply:
    """The nodes in order, each applied to the outputs its ``spec.sources`` name (a list for a merge)."""
    nodes = [(fn, sources, layer.merge) for fn, sources, layer in zip(fns, spec.sources, spec.layers, strict=True)]

    def apply(params, state, x, training, key):
        outs = {-1: _nhwc(x)}
        for i, (fn, sources, merge) in enumerate(nodes):
            h = [outs[j] for j in sources] if merge else outs[sources[0]]
            outs[i], state = fn(params, state, h, training, jax.random.fold_in(key, i))
        return _nchw(outs[len(nodes) - 1]), state

    return apply
