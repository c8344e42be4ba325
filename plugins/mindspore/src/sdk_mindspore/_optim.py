"""The core's optimizers in MindSpore ops.

MindSpore's SGD follows the core's rules at a constant learning rate and is used there. Its
other built-in optimizers differ from the core's rules (sdk_core/model/optim.py): Adagrad has
no epsilon (a zero gradient divides 0 by 0) and starts at 0.1, RMSProp puts epsilon inside the
square root, Adam adds epsilon to the bias-corrected root, AdamWeightDecay skips bias
correction. So :func:`core_rule` applies the core's rules itself with MindSpore ops.
"""

from __future__ import annotations

from collections.abc import Callable

from mindspore import Parameter, nn, ops

from sdk_core import Optimizer

SLOTS = {"sgd": ("buf",), "adagrad": ("sum",), "rmsprop": ("v",), "adam": ("m", "v"), "adamw": ("m", "v")}


def native_sgd(o: Optimizer, params: list[Parameter]) -> nn.SGD | None:
    """MindSpore's own SGD where it follows the core's rule (a constant learning rate)."""
    if o.name == "sgd" and o.schedule.is_constant and params:
        return nn.SGD(params, learning_rate=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    return None


def canonical_slot(mine: str, o: Optimizer) -> str:
    """This module's slot name as the canonical one (sdk_core.model.optim.STATE_SLOTS)."""
    if mine == "v":
        return "square_avg" if o.name == "rmsprop" else "exp_avg_sq"
    return {"buf": "momentum", "sum": "sum", "m": "exp_avg"}[mine]


def core_rule(o: Optimizer, params: list[Parameter]) -> tuple[Callable, dict[str, list[Parameter]]]:
    """``(apply, slots)``: ``apply(grads, lr, bc1, bc2)`` is one update of ``params`` in place,
    to be called inside the jit-compiled step (``lr`` is the step's learning rate, ``bc1`` and
    ``bc2`` Adam's bias corrections ``1 - beta ** (t + 1)``); ``slots`` are the Parameters
    holding the optimizer state, one list per slot aligned with ``params``."""
    names = SLOTS[o.name] if o.name != "sgd" or o.momentum else ()
    slots = {
        n: [Parameter(ops.zeros_like(p), name=f"{n}.{p.name}", requires_grad=False) for p in params] for n in names
    }

    def apply(grads, lr, bc1, bc2):
        for i, (p, g) in enumerate(zip(params, grads)):  # noqa: B905 (MindSpore graphs know no strict=)
            if o.weight_decay and o.name != "adamw":
                g = g + o.weight_decay * p
            if o.name == "sgd":
                if o.momentum:
                    buf = slots["buf"][i]
                    ops.assign(buf, o.momentum * buf + g)
                    g = g + o.momentum * buf if o.nesterov else buf
                ops.assign(p, p - lr * g)
            elif o.name == "adagrad":
                ops.assign(slots["sum"][i], slots["sum"][i] + g * g)
                ops.assign(p, p - lr * g / (ops.sqrt(slots["sum"][i]) + o.eps))
            elif o.name == "rmsprop":
                ops.assign(slots["v"][i], o.rho * slots["v"][i] + (1 - o.rho) * g * g)
                ops.assign(p, p - lr * g / (ops.sqrt(slots["v"][i]) + o.eps))
            else:
                if o.name == "adamw" and o.weight_decay:
                    ops.assign(p, p * (1 - lr * o.weight_decay))
                m, v = slots["m"][i], slots["v"][i]
                ops.assign(m, o.beta1 * m + (1 - o.beta1) * g)
                ops.assign(v, o.beta2 * v + (1 - o.beta2) * g * g)
                ops.assign(p, p - lr * (m / bc1) / (ops.sqrt(v / bc2) + o.eps))

    return apply, slots
