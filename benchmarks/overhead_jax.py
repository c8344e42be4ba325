"""Stack.fit on the JAX plugin vs a hand-written JAX + optax loop (see _overhead.py).

python benchmarks/overhead_jax.py [--models mlp,lenet5] [--rounds 12] [--batch 32]
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


def make_native(spec, weights, optimizer):
    params = {k: jnp.asarray(v) for k, v in weights.items()}
    tx = optax.adam(optimizer.lr)
    state = [params, tx.init(params)]

    @jax.jit
    def update(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x, spec.name), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def epoch(x, y, order, batch):
        losses = []
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            state[0], state[1], loss = update(state[0], state[1], x[idx], y[idx])
            losses.append(loss)
        return [float(l) for l in losses]

    return epoch


if __name__ == "__main__":
    main("jax", make_native)
