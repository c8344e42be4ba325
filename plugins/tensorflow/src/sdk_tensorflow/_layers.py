"""Keras layers built from a ModelSpec, and where each canonical weight lives in them.

Canonical images are channels-first; TensorFlow's CPU convolutions want channels-last. The
model transposes to NHWC before spatial layers (conv, pool, batchnorm on images) and back to
NCHW before any layer that reads the last axis (flatten, dense, norms), so the canonical
layout holds everywhere outside the spatial run. A graph spec is a Keras functional model with
the same rule per node: elementwise layers and ``add`` keep their first input's layout,
``concat`` and ``global_avg_pool`` on images run channels-last.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sdk_core import ModelSpec
from sdk_core.model import spec as S

from ._framework import keras, tf
from ._ops import OpLayer


class BatchNorm(keras.layers.Layer):
    """Batch normalization with the core's rule: running variance from the unbiased batch
    variance (Keras' own layer uses the biased one). Channels on the last axis."""

    def __init__(self, layer: S.BatchNorm, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps, self.momentum = layer.eps, layer.momentum

    def build(self, shape):
        c = shape[-1]
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=(c,), initializer="zeros", trainable=False, name="moving_mean")
        self.moving_var = self.add_weight(shape=(c,), initializer="ones", trainable=False, name="moving_var")

    def call(self, x, training=False):
        axes = list(range(len(x.shape) - 1))
        if training:
            mean, var = tf.nn.moments(x, axes)
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
            m = tf.cast(self.momentum, x.dtype)
            self.moving_mean.assign((1 - m) * self.moving_mean + m * mean)
            self.moving_var.assign((1 - m) * self.moving_var + m * var * n / tf.maximum(n - 1, 1))
        else:
            mean, var = self.moving_mean, self.moving_var
        return tf.nn.batch_normalization(x, mean, var, self.beta, self.gamma, self.eps)


class Embedding(keras.layers.Layer):
    def __init__(self, layer: S.Embedding, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = layer

    def build(self, shape):
        self.table = self.add_weight(shape=(self.spec.vocab_size, self.spec.dim), name="table")
        self.position = (
            self.add_weight(shape=(self.spec.max_len, self.spec.dim), name="position") if self.spec.max_len else None
        )

    def call(self, x, training=False):
        y = tf.gather(self.table, x)
        return y + self.position[: tf.shape(x)[1]] if self.position is not None else y


class Attention(keras.layers.Layer):
    """Multi-head self-attention; head h uses columns ``h*dh:(h+1)*dh`` of each projection."""

    def __init__(self, dim: int, heads: int, causal: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.heads, self.causal = heads, causal
        self.proj = {n: keras.layers.Dense(dim, dtype=self.dtype_policy) for n in "qkvo"}

    def call(self, x, training=False):
        b, t, d = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        split = lambda n: tf.transpose(tf.reshape(self.proj[n](x), (b, t, self.heads, d // self.heads)), (0, 2, 1, 3))
        q, k, v = split("q"), split("k"), split("v")
        scores = tf.matmul(q, k, transpose_b=True) / tf.cast(math.sqrt(d // self.heads), x.dtype)
        if self.causal:
            mask = tf.linalg.band_part(tf.ones((t, t), tf.bool), -1, 0)
            scores = tf.where(mask, scores, tf.cast(-math.inf, x.dtype))
        ctx = tf.transpose(tf.matmul(tf.nn.softmax(scores, -1), v), (0, 2, 1, 3))
        return self.proj["o"](tf.reshape(ctx, (b, t, d)))


def gelu(x):
    return keras.activations.gelu(x, approximate=True)


class TransformerBlock(keras.layers.Layer):
    """Pre-norm block; with ``remat`` set while a training step is traced, its insides are
    recomputed during backward (``tf.recompute_grad``): only the block's input is kept."""

    remat = False

    def __init__(self, dim: int, layer: S.TransformerBlock, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        dt = self.dtype_policy
        self.ln1 = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dt)
        self.ln2 = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dt)
        self.attn = Attention(dim, layer.num_heads, layer.causal, dtype=dt)
        self.fc1 = keras.layers.Dense(dim * layer.mlp_ratio, dtype=dt)
        self.fc2 = keras.layers.Dense(dim, dtype=dt)
        self.drop = keras.layers.Dropout(layer.dropout, seed=seed, dtype=dt)

    def call(self, x, training=False):
        if self.remat and training:
            return tf.recompute_grad(lambda h: self.inside(h, training))(x)
        return self.inside(x, training)

    def inside(self, x, training):
        x = x + self.drop(self.attn(self.ln1(x)), training=training)
        return x + self.drop(self.fc2(gelu(self.fc1(self.ln2(x)))), training=training)


SPATIAL = (S.Conv2D, S.MaxPool2D, S.AvgPool2D)
ELEMENTWISE = (S.ReLU, S.GELU, S.Tanh, S.Sigmoid, S.Dropout)
NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _nhwc(layer: S.Layer, shape: tuple[int, ...]) -> bool:
    """Whether the layer runs on channels-last images."""
    return isinstance(layer, SPATIAL) or (
        isinstance(layer, (S.BatchNorm, S.GlobalAvgPool, S.Concat)) and len(shape) == 3
    )


def _layer(layer: S.Layer, shape: tuple[int, ...], dtype: str, seed: int) -> Callable:
    kw = {"dtype": dtype}
    nhwc = {"data_format": "channels_last", **kw}  # explicit: ~/.keras/keras.json may say otherwise
    if isinstance(layer, S.Dense):
        return keras.layers.Dense(layer.units, use_bias=layer.bias, **kw)
    if isinstance(layer, S.Conv2D):
        conv = keras.layers.Conv2D(layer.filters, layer.kernel_size, layer.stride, use_bias=layer.bias, **nhwc)
        if not layer.padding:
            return conv
        return keras.Sequential([keras.layers.ZeroPadding2D(layer.padding, **nhwc), conv])
    if isinstance(layer, S.MaxPool2D):
        return keras.layers.MaxPooling2D(layer.pool_size, layer.step, **nhwc)
    if isinstance(layer, S.AvgPool2D):
        return keras.layers.AveragePooling2D(layer.pool_size, layer.step, **nhwc)
    if isinstance(layer, S.BatchNorm):
        return BatchNorm(layer, **kw)
    if isinstance(layer, S.LayerNorm):
        return keras.layers.LayerNormalization(epsilon=layer.eps, **kw)
    if isinstance(layer, S.Dropout):
        return keras.layers.Dropout(layer.rate, seed=seed, **kw)
    if isinstance(layer, S.Embedding):
        return Embedding(layer, **kw)
    if isinstance(layer, S.Attention):
        return Attention(shape[-1], layer.num_heads, layer.causal, **kw)
    if isinstance(layer, S.TransformerBlock):
        return TransformerBlock(shape[-1], layer, seed, **kw)
    if isinstance(layer, S.GlobalAvgPool):
        if len(shape) == 3:
            return keras.layers.GlobalAveragePooling2D(**nhwc)
        return keras.layers.GlobalAveragePooling1D(**nhwc)
    if isinstance(layer, S.Add):
        return keras.layers.Add(**kw)
    if isinstance(layer, S.Concat):  # the channels: images run channels-last
        return keras.layers.Concatenate(axis=-1, **kw)
    if isinstance(layer, S.Flatten):  # on NCHW here: a plain reshape keeps channels-first order
        return keras.layers.Flatten(**nhwc)
    simple = {
        "relu": keras.layers.ReLU,
        "softmax": lambda **k: keras.layers.Softmax(axis=-1, **k),
        "tanh": lambda **k: keras.layers.Activation("tanh", **k),
        "sigmoid": lambda **k: keras.layers.Activation("sigmoid", **k),
        "gelu": lambda **k: keras.layers.Activation(gelu, **k),
    }
    return simple[layer.type](**kw)


class SpecModel(keras.Model):
    """The spec's layers with the NCHW/NHWC transposes between them; a graph spec's run as the
    functional model ``graph``."""

    def __init__(self, spec: ModelSpec, dtype: str, seed: int) -> None:
        super().__init__(dtype=dtype)
        self.blocks = [
            _layer(l, spec.input_shape_of(i), dtype, seed + i)
            if not isinstance(l, S.Op)
            else OpLayer(spec, i, dtype)
            if spec.plans[i] is not None
            else None  # a node the core folded: nothing runs
            for i, l in enumerate(spec.layers)
        ]
        self.graph = _graph(spec, self.blocks, dtype) if spec.is_graph else None
        self.nhwc = [_nhwc(l, spec.input_shape_of(i)) for i, l in enumerate(spec.layers)]
        self.keep = [isinstance(l, ELEMENTWISE) for l in spec.layers]
        self.images = [len(shape) == 3 for shape in spec.shapes[1:]]

    def call(self, x, training=False):
        if self.graph is not None:
            return self.graph(x, training=training)
        channels_last = False
        for block, nhwc, keep, image in zip(self.blocks, self.nhwc, self.keep, self.images, strict=True):
            if not keep and nhwc != channels_last:
                x = tf.transpose(x, NHWC if nhwc else NCHW)
                channels_last = nhwc
            x = block(x, training=training)
            channels_last = channels_last and image
        return tf.transpose(x, NCHW) if channels_last else x


def _graph(spec: ModelSpec, blocks: list[Callable], dtype: str) -> keras.Model:
    """The functional model of a graph spec: each node's block on its sources' outputs, each
    output transposed once per layout a node reads it in."""
    inputs = keras.Input(spec.input_shape, dtype="int64" if spec.input_dtype == "int64" else dtype)
    # outs[j + 1]: node j's output by layout (channels-last or not), its own layout first
    outs: list[dict[bool, object]] = [{False: inputs}]

    def read(j: int, channels_last: bool):
        have = outs[j + 1]
        if channels_last not in have:
            have[channels_last] = keras.ops.transpose(have[not channels_last], NHWC if channels_last else NCHW)
        return have[channels_last]

    for i, (layer, block, sources) in enumerate(zip(spec.layers, blocks, spec.sources, strict=True)):
        if isinstance(layer, S.Op):  # channels-first, reading the inputs the core did not fold
            # a node on weights alone (a tied table) reads no node: it is called on the input, unused
            live = [read(j, False) for j in sources if spec.dtypes[j + 1] != "folded"] or [inputs]
            outs.append({False: block(live if len(live) > 1 else live[0])} if block is not None else {})
            continue
        shape = spec.input_shape_of(i)
        if len(shape) != 3:
            channels_last = False
        elif isinstance(layer, (S.Add, *ELEMENTWISE)):
            channels_last = next(iter(outs[sources[0] + 1]))
        else:
            channels_last = _nhwc(layer, shape)
        xs = [read(j, channels_last) for j in sources]
        out = block(xs if layer.merge else xs[0])
        outs.append({channels_last and len(spec.shapes[i + 1]) == 3: out})
    return keras.Model(inputs, read(len(blocks) - 1, False))


def _dense(prefix: str, dense) -> dict:
    out = {prefix + "weight": (dense.kernel, None)}
    if dense.bias is not None:
        out[prefix + "bias"] = (dense.bias, None)
    return out


def _norm(prefix: str, ln) -> dict:
    return {prefix + "weight": (ln.gamma, None), prefix + "bias": (ln.beta, None)}


HWIO = ((2, 3, 1, 0), (3, 2, 0, 1))  # canonical (O, I, H, W) -> Keras (H, W, I, O), and back


def variables(spec: ModelSpec, model: SpecModel) -> dict[str, tuple]:
    """Canonical name -> (variable, transposes or None)."""
    out: dict[str, tuple] = {}
    for i, (layer, block) in enumerate(zip(spec.layers, model.blocks, strict=True)):
        p = f"{spec.node_names[i]}."
        if isinstance(layer, S.Dense):
            out.update(_dense(p, block))
        elif isinstance(layer, S.Conv2D):
            conv = block.layers[-1] if isinstance(block, keras.Sequential) else block
            out[p + "weight"] = (conv.kernel, HWIO)
            if layer.bias:
                out[p + "bias"] = (conv.bias, None)
        elif isinstance(layer, S.BatchNorm):
            out.update(_norm(p, block))
            out[p + "running_mean"], out[p + "running_var"] = (block.moving_mean, None), (block.moving_var, None)
        elif isinstance(layer, S.LayerNorm):
            out.update(_norm(p, block))
        elif isinstance(layer, S.Op) and block is not None:
            out.update(block.canonical())
        elif isinstance(layer, S.Embedding):
            out[p + "weight"] = (block.table, None)
            if layer.max_len:
                out[p + "position"] = (block.position, None)
        elif isinstance(layer, (S.Attention, S.TransformerBlock)):
            attn = block if isinstance(layer, S.Attention) else block.attn
            a = p if isinstance(layer, S.Attention) else p + "attn."
            for n in "qkvo":
                out.update(_dense(f"{a}{n}.", attn.proj[n]))
            if isinstance(layer, S.TransformerBlock):
                out.update(_norm(p + "ln1.", block.ln1))
                out.update(_norm(p + "ln2.", block.ln2))
                out.update(_dense(p + "fc1.", block.fc1))
                out.update(_dense(p + "fc2.", block.fc2))
    return out
