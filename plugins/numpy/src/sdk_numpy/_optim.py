"""The core's optimizers (sdk_core/model/optim.py defines the rules), updating arrays in place."""

from __future__ import annotations

import functools

import numpy as np

from sdk_core import Optimizer
from sdk_core.model.optim import OptimizerState, state_slots

# this module's slot names -> the canonical ones (sdk_core.model.optim.STATE_SLOTS)
CANONICAL = {
    "sgd": {"buf": "momentum"},
    "adagrad": {"sum": "sum"},
    "rmsprop": {"v": "square_avg"},
    "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "adamw": {"m": "exp_avg", "v": "exp_avg_sq"},
}


class Updater:
    """Applies ``optimizer`` to ``params[name]`` for every trainable ``name``."""

    def __init__(self, optimizer: Optimizer, trainable: list[str]) -> None:
        self.opt, self.names, self.t = optimizer, trainable, 0
        self.state: dict[str, dict[str, np.ndarray]] = {n: {} for n in trainable}

    def get_state(self, params: dict[str, np.ndarray]) -> OptimizerState:
        """The state in the canonical layout (slots not created yet read as zeros)."""
        slots = {
            canonical: {n: self.state[n].get(mine, np.zeros_like(params[n])).copy() for n in self.names}
            for mine, canonical in CANONICAL[self.opt.name].items()
            if canonical in state_slots(self.opt)
        }
        return OptimizerState(self.t, slots)

    def set_state(self, state: OptimizerState) -> None:
        self.t = state.step
        for mine, canonical in CANONICAL[self.opt.name].items():
            for n, value in state.slots.get(canonical, {}).items():
                self.state[n][mine] = np.array(value, copy=True)

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
