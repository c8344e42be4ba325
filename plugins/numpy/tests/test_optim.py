"""Optimizer updates against the rules of sdk_core/model/optim.py, written out per element."""

import math

import numpy as np
import pytest

from sdk_core import Optimizer, Schedule
from sdk_numpy._optim import Updater

P0 = [0.5, -1.5, 2.0]
GRADS = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.2, 0.25]]


def by_hand(o: Optimizer, steps: list[list[float]] = GRADS) -> list[float]:
    """Updates of P0 with the gradients of ``steps``, one element at a time."""
    out = []
    for i, p in enumerate(P0):
        buf = s = v = m = 0.0
        for t, grads in enumerate(steps):
            g, lr = grads[i], o.lr_at(t)
            if o.weight_decay and o.name != "adamw":
                g += o.weight_decay * p
            if o.name == "sgd":
                if o.momentum:
                    buf = g if t == 0 else o.momentum * buf + g
                    g = g + o.momentum * buf if o.nesterov else buf
                p -= lr * g
            elif o.name == "adagrad":
                s += g * g
                p -= lr * g / (math.sqrt(s) + o.eps)
            elif o.name == "rmsprop":
                v = o.rho * v + (1 - o.rho) * g * g
                p -= lr * g / (math.sqrt(v) + o.eps)
            else:
                if o.name == "adamw":
                    p *= 1 - lr * o.weight_decay
                m = o.beta1 * m + (1 - o.beta1) * g
                v = o.beta2 * v + (1 - o.beta2) * g * g
                p -= lr * (m / (1 - o.beta1 ** (t + 1))) / (math.sqrt(v / (1 - o.beta2 ** (t + 1))) + o.eps)
        out.append(p)
    return out


OPTIMIZERS = {
    "gd": Optimizer("sgd", lr=0.1),
    "momentum": Optimizer("sgd", lr=0.1, momentum=0.9),
    "nesterov": Optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True),
    "sgd_weight_decay": Optimizer("sgd", lr=0.1, momentum=0.5, weight_decay=0.01),
    "adagrad": Optimizer("adagrad", lr=0.1),
    "rmsprop": Optimizer("rmsprop", lr=0.01, rho=0.9),
    "adam": Optimizer("adam", lr=0.01),
    "adam_l2": Optimizer("adam", lr=0.01, weight_decay=0.1),
    "adamw": Optimizer("adamw", lr=0.01, weight_decay=0.1),
    "step_schedule": Optimizer("sgd", lr=0.1, schedule=Schedule("step", step_size=1, gamma=0.5)),
    "cosine_warmup": Optimizer("adam", lr=0.01, schedule=Schedule("cosine", warmup_steps=1, total_steps=3)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_three_updates_follow_the_rule(name):
    optimizer = OPTIMIZERS[name]
    params = {"w": np.array(P0, dtype=np.float64)}
    update = Updater(optimizer, ["w"])
    for grads in GRADS:
        update(params, {"w": np.array(grads)})
    np.testing.assert_allclose(params["w"], by_hand(optimizer), rtol=1e-12, atol=1e-14)


def test_float32_parameters_stay_float32():
    params = {"w": np.array(P0, dtype=np.float32)}
    update = Updater(Optimizer("adamw", weight_decay=0.1), ["w"])
    update(params, {"w": np.array(GRADS[0], dtype=np.float32)})
    assert params["w"].dtype == np.float32
    np.testing.assert_allclose(params["w"], by_hand(Optimizer("adamw", weight_decay=0.1), GRADS[:1]), rtol=1e-6)


def test_buffers_are_not_trained():
    from sdk_core import BatchNorm, Dense, ModelSpec
    from sdk_numpy._runtime import NumpyModel

    model = NumpyModel(ModelSpec(input_shape=(3,), layers=[BatchNorm(), Dense(2)]))
    assert model.trainable == ["0.weight", "0.bias", "1.weight", "1.bias"]
