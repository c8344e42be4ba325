"""Forward and backward passes of every layer, in NumPy.

Each op reads its weights from the model's canonical ``params`` dict under its own prefix
(``"3."`` or ``"3.attn."``), keeps what its backward pass needs from the last forward pass,
and adds its weight gradients to ``grads`` under the same names.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sdk_core.model import spec as S

GELU_C = math.sqrt(2.0 / math.pi)


class Op:
    #: False for the model's first op: the gradient of the model input is never used.
    input_grad = True
    arity = 1  # inputs: a merge takes two or more

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def p(self, params: dict, name: str) -> np.ndarray:
        return params[self.prefix + name]

    def add_grad(self, grads: dict, name: str, value: np.ndarray) -> None:
        key = self.prefix + name
        grads[key] = grads[key] + value if key in grads else value

    def forward(self, params: dict, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, params: dict, grads: dict, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Linear(Op):
    """``y = x @ W + b`` on the last axis of any-rank input."""

    def __init__(self, prefix: str, bias: bool = True) -> None:
        super().__init__(prefix)
        self.bias = bias

    def forward(self, params, x, training):
        self.x = x
        y = x @ self.p(params, "weight")
        return y + self.p(params, "bias") if self.bias else y

    def backward(self, params, grads, dy):
        x2 = self.x.reshape(-1, self.x.shape[-1])
        d2 = dy.reshape(-1, dy.shape[-1])
        self.add_grad(grads, "weight", x2.T @ d2)
        if self.bias:
            self.add_grad(grads, "bias", d2.sum(axis=0))
        return dy @ self.p(params, "weight").T if self.input_grad else None


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """(B, C, H, W) -> (B, C, Ho, Wo, k, k) strided view."""
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def _scatter(dxp: np.ndarray, dwin: np.ndarray, k: int, s: int) -> None:
    """Add window gradients (B, C, Ho, Wo, k, k) back into the padded input gradient."""
    ho, wo = dwin.shape[2:4]
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += dwin[..., i, j]


class Conv2D(Op):
    """Convolution as im2col + one matmul."""

    def __init__(self, prefix: str, layer: S.Conv2D) -> None:
        super().__init__(prefix)
        self.k, self.s, self.pad, self.bias = layer.kernel_size, layer.stride, layer.padding, layer.bias

    def forward(self, params, x, training):
        w = self.p(params, "weight")
        pad = self.pad
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
        win = _windows(xp, self.k, self.s)
        b, _, ho, wo = win.shape[:4]
        self.xshape, self.cols = xp.shape, win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, -1)
        y = self.cols @ w.reshape(w.shape[0], -1).T
        if self.bias:
            y += self.p(params, "bias")
        return y.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2)

    def backward(self, params, grads, dy):
        w = self.p(params, "weight")
        f = w.shape[0]
        b, _, ho, wo = dy.shape
        d2 = dy.transpose(0, 2, 3, 1).reshape(-1, f)
        self.add_grad(grads, "weight", (d2.T @ self.cols).reshape(w.shape))
        if self.bias:
            self.add_grad(grads, "bias", d2.sum(axis=0))
        if not self.input_grad:
            return None
        dcols = (d2 @ w.reshape(f, -1)).reshape(b, ho, wo, w.shape[1], self.k, self.k)
        dxp = np.zeros(self.xshape, dtype=dy.dtype)
        _scatter(dxp, dcols.transpose(0, 3, 1, 2, 4, 5), self.k, self.s)
        pad = self.pad
        return dxp[:, :, pad : dxp.shape[2] - pad, pad : dxp.shape[3] - pad] if pad else dxp


class MaxPool2D(Op):
    def __init__(self, prefix: str, layer: S.MaxPool2D | S.AvgPool2D) -> None:
        super().__init__(prefix)
        self.k, self.s = layer.pool_size, layer.step

    def forward(self, params, x, training):
        win = _windows(x, self.k, self.s)
        flat = win.reshape(win.shape[:4] + (-1,))
        self.xshape, self.arg = x.shape, flat.argmax(axis=-1)
        return np.take_along_axis(flat, self.arg[..., None], axis=-1)[..., 0]

    def backward(self, params, grads, dy):
        kk = self.k * self.k
        dwin = (self.arg[..., None] == np.arange(kk)) * dy[..., None]
        dx = np.zeros(self.xshape, dtype=dy.dtype)
        _scatter(dx, dwin.reshape(dy.shape + (self.k, self.k)), self.k, self.s)
        return dx


class AvgPool2D(MaxPool2D):
    def forward(self, params, x, training):
        self.xshape = x.shape
        return _windows(x, self.k, self.s).mean(axis=(-2, -1))

    def backward(self, params, grads, dy):
        dx = np.zeros(self.xshape, dtype=dy.dtype)
        dwin = np.broadcast_to((dy / (self.k * self.k))[..., None, None], dy.shape + (self.k, self.k))
        _scatter(dx, dwin, self.k, self.s)
        return dx


class Flatten(Op):
    def forward(self, params, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, params, grads, dy):
        return dy.reshape(self.shape)


class GlobalAvgPool(Op):
    def forward(self, params, x, training):
        self.shape = x.shape
        return x.mean(axis=(2, 3)) if x.ndim == 4 else x.mean(axis=1)

    def backward(self, params, grads, dy):
        if len(self.shape) == 4:
            return np.broadcast_to(dy[:, :, None, None] / (self.shape[2] * self.shape[3]), self.shape).copy()
        return np.broadcast_to(dy[:, None, :] / self.shape[1], self.shape).copy()


class Add(Op):
    """A merge: ``forward`` takes and ``backward`` returns one array per input."""

    def forward(self, params, xs, training):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def backward(self, params, grads, dy):
        return [dy] * self.arity


class Concat(Op):
    def forward(self, params, xs, training):
        self.axis = 1 if xs[0].ndim == 4 else xs[0].ndim - 1
        self.splits = np.cumsum([x.shape[self.axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=self.axis)

    def backward(self, params, grads, dy):
        return np.split(dy, self.splits, axis=self.axis)


class ReLU(Op):
    def forward(self, params, x, training):
        self.mask = x > 0
        return x * self.mask

    def backward(self, params, grads, dy):
        return dy * self.mask


class GELU(Op):
    def forward(self, params, x, training):
        self.x = x
        self.t = np.tanh(GELU_C * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + self.t)

    def backward(self, params, grads, dy):
        x, t = self.x, self.t
        du = GELU_C * (1 + 3 * 0.044715 * x**2)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


class Tanh(Op):
    def forward(self, params, x, training):
        self.y = np.tanh(x)
        return self.y

    def backward(self, params, grads, dy):
        return dy * (1 - self.y * self.y)


class Sigmoid(Op):
    def forward(self, params, x, training):
        self.y = 0.5 * (1 + np.tanh(0.5 * x))  # stable for large |x|
        return self.y

    def backward(self, params, grads, dy):
        return dy * self.y * (1 - self.y)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


class Softmax(Op):
    def forward(self, params, x, training):
        self.y = softmax(x)
        return self.y

    def backward(self, params, grads, dy):
        return softmax_backward(self.y, dy)


class Dropout(Op):
    """Inverted dropout; the mask comes from the model's seeded generator."""

    def __init__(self, prefix: str, rate: float, rng: np.random.Generator) -> None:
        super().__init__(prefix)
        self.rate, self.rng, self.mask = rate, rng, None

    def forward(self, params, x, training):
        if not training or self.rate == 0:
            self.mask = None
            return x
        keep = 1.0 - self.rate
        self.mask = (self.rng.random(x.shape) < keep).astype(x.dtype) / np.asarray(keep, x.dtype)
        return x * self.mask

    def backward(self, params, grads, dy):
        return dy if self.mask is None else dy * self.mask


class _Norm(Op):
    training = False  # set by forward: backward differs in inference mode

    def __init__(self, prefix: str, eps: float) -> None:
        super().__init__(prefix)
        self.eps = eps

    def _param_axes(self, ndim: int) -> tuple[int, ...]:
        """The axes the weight and bias run along (each norm says which)."""
        raise NotImplementedError

    def _normalize(self, params, x, mean, var, axes):
        self.axes, self.inv = axes, 1.0 / np.sqrt(var + np.asarray(self.eps, x.dtype))
        self.xhat = (x - mean) * self.inv
        return self.xhat * self._shape(self.p(params, "weight")) + self._shape(self.p(params, "bias"))

    def _shape(self, v: np.ndarray) -> np.ndarray:
        return v

    def backward(self, params, grads, dy):
        xhat, axes = self.xhat, self.axes
        sum_axes = tuple(a for a in range(dy.ndim) if a not in self._param_axes(dy.ndim))
        self.add_grad(grads, "weight", (dy * xhat).sum(axis=sum_axes))
        self.add_grad(grads, "bias", dy.sum(axis=sum_axes))
        g = dy * self._shape(self.p(params, "weight"))
        if not self.training:
            return g * self.inv
        n = np.prod([dy.shape[a] for a in axes])
        return (
            self.inv / n * (n * g - g.sum(axis=axes, keepdims=True) - xhat * (g * xhat).sum(axis=axes, keepdims=True))
        )


class BatchNorm(_Norm):
    """Per channel (axis 1) for images, per feature for vectors."""

    def __init__(self, prefix: str, layer: S.BatchNorm) -> None:
        super().__init__(prefix, layer.eps)
        self.momentum = layer.momentum

    def _param_axes(self, ndim):
        return (1,)

    def _shape(self, v):
        return v.reshape((1, -1) + (1,) * (self.ndim - 2))

    def forward(self, params, x, training):
        self.ndim, self.training = x.ndim, training
        axes = (0,) + tuple(range(2, x.ndim))
        if training:
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
            n = x.size // x.shape[1]
            m = self.momentum
            for name, stat in (("running_mean", mean), ("running_var", var * n / max(n - 1, 1))):
                key = self.prefix + name
                params[key] = ((1 - m) * params[key] + m * stat.reshape(-1)).astype(params[key].dtype)
        else:
            mean = self._shape(self.p(params, "running_mean"))
            var = self._shape(self.p(params, "running_var"))
        return self._normalize(params, x, mean, var, axes)


class LayerNorm(_Norm):
    def _param_axes(self, ndim):
        return (ndim - 1,)

    def forward(self, params, x, training):
        self.training = True  # layer statistics always come from the input itself
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return self._normalize(params, x, mean, var, (x.ndim - 1,))


class Embedding(Op):
    def __init__(self, prefix: str, layer: S.Embedding) -> None:
        super().__init__(prefix)
        self.positions = layer.max_len > 0

    def forward(self, params, x, training):
        self.x = x
        y = self.p(params, "weight")[x]
        if self.positions:
            y = y + self.p(params, "position")[: x.shape[1]]
        return y

    def backward(self, params, grads, dy):
        w = self.p(params, "weight")
        dw = np.zeros_like(w)
        np.add.at(dw, self.x.reshape(-1), dy.reshape(-1, w.shape[1]))
        self.add_grad(grads, "weight", dw)
        if self.positions:
            dp = np.zeros_like(self.p(params, "position"))
            dp[: dy.shape[1]] = dy.sum(axis=0)
            self.add_grad(grads, "position", dp)
        return None


class Attention(Op):
    """Multi-head self-attention; heads are contiguous column chunks of the projections."""

    def __init__(self, prefix: str, num_heads: int, causal: bool) -> None:
        super().__init__(prefix)
        self.h, self.causal = num_heads, causal
        self.proj = {n: Linear(f"{prefix}{n}.") for n in "qkvo"}

    def _split(self, t):
        b, n, d = t.shape
        return t.reshape(b, n, self.h, d // self.h).transpose(0, 2, 1, 3)

    def forward(self, params, x, training):
        q, k, v = (self._split(self.proj[n].forward(params, x, training)) for n in "qkv")
        self.scale = 1.0 / math.sqrt(q.shape[-1])
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.asarray(self.scale, x.dtype)
        if self.causal:
            n = x.shape[1]
            scores = np.where(np.triu(np.ones((n, n), bool), 1), -np.inf, scores)
        self.q, self.k, self.v, self.a = q, k, v, softmax(scores)
        ctx = (self.a @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        return self.proj["o"].forward(params, ctx, training)

    def backward(self, params, grads, dy):
        dctx = self._split(self.proj["o"].backward(params, grads, dy))
        da = dctx @ self.v.transpose(0, 1, 3, 2)
        dv = self.a.transpose(0, 1, 3, 2) @ dctx
        ds = softmax_backward(self.a, da) * np.asarray(self.scale, dy.dtype)
        dq = ds @ self.k
        dk = ds.transpose(0, 1, 3, 2) @ self.q
        merge = lambda t: t.transpose(0, 2, 1, 3).reshape(dy.shape)
        return sum(self.proj[n].backward(params, grads, merge(d)) for n, d in zip("qkv", (dq, dk, dv), strict=True))


class TransformerBlock(Op):
    """``x + drop(attn(ln1(x)))`` then ``x + drop(fc2(gelu(fc1(ln2(x)))))``."""

    def __init__(self, prefix: str, layer: S.TransformerBlock, rng: np.random.Generator) -> None:
        super().__init__(prefix)
        self.attn_path = [
            LayerNorm(f"{prefix}ln1.", 1e-5),
            Attention(f"{prefix}attn.", layer.num_heads, layer.causal),
            Dropout(prefix, layer.dropout, rng),
        ]
        self.mlp_path = [
            LayerNorm(f"{prefix}ln2.", 1e-5),
            Linear(f"{prefix}fc1."),
            GELU(prefix),
            Linear(f"{prefix}fc2."),
            Dropout(prefix, layer.dropout, rng),
        ]

    def forward(self, params, x, training):
        for path in (self.attn_path, self.mlp_path):
            h = x
            for op in path:
                h = op.forward(params, h, training)
            x = x + h
        return x

    def backward(self, params, grads, dy):
        for path in (self.mlp_path, self.attn_path):
            dh = dy
            for op in reversed(path):
                dh = op.backward(params, grads, dh)
            dy = dy + dh
        return dy


def make_op(node: str, layer: S.Layer, rng: np.random.Generator) -> Op:
    """The op for the spec's node named ``node`` (its index in a sequential spec)."""
    prefix = f"{node}."
    simple = {
        "flatten": Flatten,
        "global_avg_pool": GlobalAvgPool,
        "add": Add,
        "concat": Concat,
        "relu": ReLU,
        "gelu": GELU,
        "tanh": Tanh,
        "sigmoid": Sigmoid,
        "softmax": Softmax,
    }
    if layer.type in simple:
        return simple[layer.type](prefix)
    if isinstance(layer, S.Dense):
        return Linear(prefix, layer.bias)
    if isinstance(layer, S.Conv2D):
        return Conv2D(prefix, layer)
    if isinstance(layer, S.AvgPool2D):
        return AvgPool2D(prefix, layer)
    if isinstance(layer, S.MaxPool2D):
        return MaxPool2D(prefix, layer)
    if isinstance(layer, S.Dropout):
        return Dropout(prefix, layer.rate, rng)
    if isinstance(layer, S.BatchNorm):
        return BatchNorm(prefix, layer)
    if isinstance(layer, S.LayerNorm):
        return LayerNorm(prefix, layer.eps)
    if isinstance(layer, S.Embedding):
        return Embedding(prefix, layer)
    if isinstance(layer, S.Attention):
        return Attention(prefix, layer.num_heads, layer.causal)
    if isinstance(layer, S.TransformerBlock):
        return TransformerBlock(prefix, layer, rng)
    raise NotImplementedError(f"layer type '{layer.type}'")


# -- losses with their gradients: (value, d value / d output) ------------------------------


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over all positions of ``-log softmax(logits)[y]``."""
    p = softmax(logits)
    n = y.size
    picked = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    value = -np.log(np.maximum(picked, np.finfo(p.dtype).tiny)).mean()
    grad = p
    np.put_along_axis(grad, y[..., None], np.take_along_axis(grad, y[..., None], axis=-1) - 1, axis=-1)
    return value, grad / np.asarray(n, grad.dtype)


def mse(output: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over all elements of ``(output - y)^2``."""
    diff = output - y.astype(output.dtype, copy=False)
    return (diff * diff).mean(), diff * np.asarray(2.0 / diff.size, output.dtype)


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}
