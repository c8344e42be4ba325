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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_cpu_allocation_failure_is_device_out_of_memory():
    """Under an address-space limit torch's "DefaultCPUAllocator: can't allocate memory" (a
    plain RuntimeError) reaches the user as DeviceOutOfMemory, with the size torch asked for."""
    code = """if True:
        import resource
        from sdk_core import Dense, DeviceOutOfMemory, ModelSpec, Stack
        stack = Stack("torch").build(ModelSpec((4,), [Dense(2)]))  # torch imported before the limit
        vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + 3 * 2**29,) * 2)  # 1.5 GiB more
        try:
            stack.build(ModelSpec((64,), [Dense(10_000_000)]))  # a 2.56 GB kernel
        except DeviceOutOfMemory as exc:
            print(exc)
        """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("out of memory on cpu:0 while building the model (it asked for 2560000000 bytes more)")


def test_operator_nodes_keep_dotted_canonical_names_and_the_model_dtype():
    """ONNX weight names hold dots ("proj.weight"), which a torch attribute cannot: an operator
    node nests them, so the state dict still has the canonical names; a stored statistic is a
    buffer the optimizer leaves alone, and a Cast of integers gives the model's float dtype."""
    from sdk_core.model.spec import ModelSpec
    from sdk_core.testing.cases import random_weights
    from sdk_core.testing.op_cases import c, op, w

    spec = ModelSpec.from_nodes(
        (3, 4),
        [
            op("mm", "MatMul", "input", "proj.weight", weights={"proj.weight": w(4, 4)}),
            op(
                "bn",
                "BatchNormalization",
                "mm",
                "bn.s",
                "bn.b",
                "bn.mean",
                "bn.running_var",
                weights={
                    "bn.s": w(3, init="ones"),
                    "bn.b": w(3, init="zeros"),
                    "bn.mean": w(3, init="zeros", trainable=False),
                    "bn.running_var": w(3, init="ones", trainable=False),
                },
            ),
            op("pos", "Greater", "bn", "zero", constants={"zero": c(0.0)}),
            op("ints", "Cast", "pos", to=7),
            op("back", "Cast", "ints", to=1),
            op("y", "Add", "bn", "back"),
        ],
    )
    weights = random_weights(spec, dtype="float64")
    x = np.random.default_rng(1).normal(size=(5, 3, 4))
    stack, ref = Stack("torch").build(spec, dtype="float64"), Stack("numpy").build(spec, dtype="float64")
    stack.set_weights(weights)
    ref.set_weights(weights)
    assert sorted(stack.get_weights()) == sorted(p.name for p in spec.layout())
    trained = {n for n, _ in stack.model.module.named_parameters()}
    assert trained == {"mm.proj.weight", "bn.bn.s", "bn.bn.b"}
    got = stack.predict(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.predict(x), rtol=1e-12, atol=1e-12)
    rule, y = Optimizer("adam", lr=0.1), np.zeros(got.shape)
    for _ in range(2):
        np.testing.assert_allclose(
            float(stack.train_step("mse", rule)(x, y)), float(ref.train_step("mse", rule)(x, y)), rtol=1e-10
        )
    after, want = stack.get_weights(), ref.get_weights()
    for name in weights:
        np.testing.assert_allclose(after[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(after["bn.bn.mean"], weights["bn.bn.mean"])


def test_predict_never_returns_a_view_of_the_callers_input():
    """A model that only moves values (an operator node's Transpose, a Flatten layer) gives torch
    a view of the input: what predict returns must still be the caller's own array."""
    from sdk_core import Flatten, ModelSpec
    from sdk_core.testing.op_cases import op

    for spec in (
        ModelSpec.from_nodes((3, 5), [op("y", "Transpose", "input", perm=[0, 2, 1])]),
        ModelSpec((3, 5), [Flatten()]),
    ):
        x = np.ones((2, 3, 5), np.float32)
        y = Stack("torch").build(spec).predict(x)
        y[...] = 7.0
        assert (x == 1.0).all(), type(spec.layers[0]).__name__
