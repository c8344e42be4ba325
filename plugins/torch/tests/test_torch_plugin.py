"""PyTorch plugin specifics: lazy import, device mapping, native modules."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from sdk_core import DeviceInfo, Optimizer, Stack, zoo


def test_entry_point_does_not_import_torch():
    code = "import sys, sdk_torch, sdk_core; sdk_core.get_manager().frameworks(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_mapping():
    from sdk_torch._runtime import torch_device

    assert torch_device(DeviceInfo(kind="cpu")) == torch.device("cpu")
    assert torch_device(DeviceInfo(kind="cuda", index=1)) == torch.device("cuda", 1)


def test_native_modules_and_linear_layout():
    stack = Stack("torch").build(zoo.lenet5())
    module = stack.model.module
    assert isinstance(module, nn.Sequential) and isinstance(module[0], nn.Conv2d) and isinstance(module[11], nn.Linear)
    weights = stack.get_weights()
    assert weights["7.weight"].shape == (400, 120)  # canonical (in, out); torch holds (120, 400)
    np.testing.assert_array_equal(weights["7.weight"], module[7].weight.detach().numpy().T)


def test_odd_input_strides_give_plain_tensors():
    stack = Stack("torch").build(zoo.lenet5())
    x = np.random.default_rng(0).normal(size=(4, 32, 32)).astype(np.float32)[:, None]  # stride-0 axis
    t = stack.model.tensor(x)
    assert t.stride() == (1024, 1024, 32, 1)
    assert stack.model.tensor(np.ascontiguousarray(x.copy())).stride() == (1024, 1024, 32, 1)
    np.testing.assert_allclose(stack.predict(x), stack.predict(np.ascontiguousarray(x.copy())), rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad", "rmsprop"])
def test_fused_optimizers_where_torch_has_them(name):
    from sdk_torch._optim import make_optimizer

    params = [torch.nn.Parameter(torch.ones(3))]
    native, _ = make_optimizer(Optimizer(name, lr=0.1, momentum=0.5 if name == "sgd" else 0.0), params)
    assert bool(native.defaults.get("fused")) == (name != "rmsprop")
    params[0].grad = torch.full((3,), 2.0)
    native.step()
    assert torch.all(params[0] < 1)  # it updates
