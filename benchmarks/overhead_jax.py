"""Stack.fit on the JAX plugin vs a hand-written JAX + optax loop (see _overhead.py).

python benchmarks/overhead_jax.py [--models mlp,lenet5,resnet] [--rounds 31] [--batch 32]
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from jax import lax

sys.path.insert(0, str(Path(__file__).parent))
from _overhead import main


def forward(params, x, model):
    """The network written by hand in JAX, as a JAX user would."""

    def dense(i, h):
        return h @ params[f"{i}.weight"] + params[f"{i}.bias"]

    if model == "mlp":
        return dense(4, jax.nn.relu(dense(2, jax.nn.relu(dense(0, x)))))

    def conv(i, h):
        y = lax.conv_general_dilated(
            h, params[f"{i}.weight"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return jax.nn.relu(y + params[f"{i}.bias"][None, :, None, None])

    def pool(h):
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    h = pool(conv(3, pool(conv(0, x))))
    h = h.reshape(h.shape[0], -1)
    return dense(11, jax.nn.relu(dense(9, jax.nn.relu(dense(7, h)))))


def resnet8(params, stats, x):
    """ResNet-8 written by hand (training mode): batch norm on batch statistics, its running
    statistics returned updated (momentum 0.1, unbiased variance), as Flax/PyTorch do."""
    new = {}

    def conv(name, h, stride=1):
        w = params[f"{name}.weight"]
        pad = (w.shape[-1] - 1) // 2
        return lax.conv_general_dilated(
            h, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
        )

    def bn(name, h):
        mean, var = h.mean(axis=(0, 2, 3)), h.var(axis=(0, 2, 3))
        n = h.size // h.shape[1]
        new[f"{name}.running_mean"] = 0.9 * stats[f"{name}.running_mean"] + 0.1 * mean
        new[f"{name}.running_var"] = 0.9 * stats[f"{name}.running_var"] + 0.1 * var * n / (n - 1)
        h = (h - mean[None, :, None, None]) / jnp.sqrt(var[None, :, None, None] + 1e-5)
        return h * params[f"{name}.weight"][None, :, None, None] + params[f"{name}.bias"][None, :, None, None]

    h = jax.nn.relu(bn("stem_bn", conv("stem", x)))
    for name, stride in (("s1b1", 1), ("s2b1", 2), ("s3b1", 2)):
        out = jax.nn.relu(bn(f"{name}_conv1_bn", conv(f"{name}_conv1", h, stride)))
        out = bn(f"{name}_conv2_bn", conv(f"{name}_conv2", out))
        short = bn(f"{name}_proj_bn", conv(f"{name}_proj", h, stride)) if stride != 1 else h
        h = jax.nn.relu(out + short)
    return h.mean(axis=(2, 3)) @ params["fc.weight"] + params["fc.bias"], new


def make_native(spec, weights, optimizer):
    trainable = {p.name for p in spec.layout() if p.trainable}
    params = {k: jnp.asarray(v) for k, v in weights.items() if k in trainable}
    stats = {k: jnp.asarray(v) for k, v in weights.items() if k not in trainable}
    tx = optax.adam(optimizer.lr)
    state = [params, tx.init(params), stats]

    @jax.jit
    def update(params, opt_state, stats, x, y):
        def loss_fn(p):
            out, new = resnet8(p, stats, x) if spec.name == "resnet8" else (forward(p, x, spec.name), stats)
            return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), new

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, stats, loss

    def epoch(x, y, order, batch):
        losses = []
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            state[0], state[1], state[2], loss = update(state[0], state[1], state[2], x[idx], y[idx])
            losses.append(loss)
        return [float(l) for l in losses]

    return epoch


if __name__ == "__main__":
    main("jax", make_native)
