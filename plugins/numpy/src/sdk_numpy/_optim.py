"""The core's optimizers (sdk_core/model/optim.py defines the rules), updating arrays in place."""

from __future__ import annotations

import functools

import numpy as np

from sdk_core import Optimizer


class Updater:
    """Applies ``optimizer`` to ``params[name]`` for every trainable ``name``."""

    def __init__(self, optimizer: Optimizer, trainable: list[str]) -> None:
        self.opt, self.names, self.t = optimizer, trainable, 0
        self.state: dict[str, dict[str, np.ndarray]] = {n: {} for n in trainable}

    def __call__(self, params: dict, grads: dict) -> None:
        o, t = self.opt, self.t
        lr = o.lr_at(t)
        for name in self.names:
            p, g, st = params[name], grads[name], self.state[name]
            cast = functools.partial(np.asarray, dtype=p.dtype)
            if o.weight_decay and o.name != "adamw":
                g = g + cast(o.weight_decay) * p
            if o.name == "sgd":
                update = g
                if o.momentum:
                    buf = st["buf"] = g.copy() if t == 0 else cast(o.momentum) * st["buf"] + g
                    update = g + cast(o.momentum) * buf if o.nesterov else buf
                p -= cast(lr) * update
            elif o.name == "adagrad":
                s = st["sum"] = st.get("sum", np.zeros_like(p)) + g * g
                p -= cast(lr) * g / (np.sqrt(s) + cast(o.eps))
            elif o.name == "rmsprop":
                v = st["v"] = cast(o.rho) * st.get("v", np.zeros_like(p)) + cast(1 - o.rho) * g * g
                p -= cast(lr) * g / (np.sqrt(v) + cast(o.eps))
            else:  # adam, adamw
                if o.name == "adamw" and o.weight_decay:
                    p *= cast(1 - lr * o.weight_decay)
                m = st["m"] = cast(o.beta1) * st.get("m", np.zeros_like(p)) + cast(1 - o.beta1) * g
                v = st["v"] = cast(o.beta2) * st.get("v", np.zeros_like(p)) + cast(1 - o.beta2) * g * g
                m_hat = m / cast(1 - o.beta1 ** (t + 1))
                v_hat = v / cast(1 - o.beta2 ** (t + 1))
                p -= cast(lr) * m_hat / (np.sqrt(v_hat) + cast(o.eps))
        self.t += 1
