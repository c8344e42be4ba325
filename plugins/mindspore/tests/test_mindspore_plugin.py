"""MindSpore plugin specifics: lazy import, one device target per process, tanh accuracy."""

import subprocess
import sys

import pytest

from sdk_core import DeviceInfo, Stack, zoo


def test_entry_point_does_not_import_mindspore():
    code = "import sys, sdk_mindspore, sdk_core; sdk_core.get_manager().frameworks(); print('mindspore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_one_device_target_per_process():
    from sdk_mindspore._runtime import use_device

    Stack("mindspore").build(zoo.mlp())  # sets the CPU target
    with pytest.raises(RuntimeError, match="one device target per process: this one uses CPU"):
        use_device(DeviceInfo(kind="cuda", index=0))


def test_tanh_is_accurate():
    import numpy as np

    from sdk_core import ModelSpec, Tanh

    x = np.linspace(-6, 6, 1001, dtype=np.float32).reshape(-1, 1)
    out = Stack("mindspore").build(ModelSpec(input_shape=(1,), layers=[Tanh()])).predict(x)
    assert np.abs(out - np.tanh(x.astype(np.float64))).max() < 5e-6


def test_graph_spec_with_a_residual_add_trains():
    import numpy as np

    from sdk_core import ModelSpec, Node, Optimizer
    from sdk_core.model import spec as S

    spec = ModelSpec.from_nodes(
        (2, 6, 6),
        [
            Node("stem", S.Conv2D(4, 3, padding="same")),
            Node("c1", S.Conv2D(4, 3, padding="same")),
            Node("bn", S.BatchNorm()),
            Node("act", S.ReLU()),
            Node("sum", S.Add(), ["act", "stem"]),
            Node("pool", S.GlobalAvgPool()),
            Node("head", S.Dense(3)),
        ],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    stack = Stack("mindspore").build(spec)
    history = stack.fit(x, y, epochs=20, batch_size=None, optimizer=Optimizer("adam", lr=0.03))
    assert {"stem.weight", "c1.bias", "bn.running_var", "head.weight"} <= set(stack.get_weights())
    assert history.loss[-1] < 0.8 * history.loss[0]


def test_a_stack_builds_after_the_script_ran_mindspore():
    # MindSpore's runtime refuses set_device once a kernel ran; the same target is fine
    code = (
        "import numpy as np, mindspore as ms\n"
        "print(float((ms.Tensor(np.ones(2, np.float32)) * 2).sum()))\n"
        "from sdk_core import Stack, zoo, digits\n"
        "x, y = digits(image_size=None)[:2]\n"
        "h = Stack('mindspore').build(zoo.get('mlp')).fit(x[:64], y[:64])\n"
        "print('trained', h.loss[0] > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "trained True" in out.stdout


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(3, 1, 1), (3, 2, 1), (1, 2, 0), (7, 2, 3), (2, 1, 0), (1, 1, 1)]
)
def test_unfolded_convolution_matches_mindspore_conv2d(kernel, stride, padding):
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn

    from sdk_core.model import spec as S
    from sdk_mindspore._layers import UnfoldConv2d

    Stack("mindspore").build(zoo.mlp())  # the plugin's CPU target
    rng = np.random.default_rng(kernel + 10 * stride)
    ours = UnfoldConv2d((3, 9, 11), S.Conv2D(4, kernel, stride=stride, padding=padding))
    theirs = nn.Conv2d(3, 4, kernel, stride, pad_mode="pad", padding=padding, has_bias=True)
    for name in ("weight", "bias"):
        value = Tensor(rng.normal(size=getattr(theirs, name).shape).astype(np.float32))
        getattr(ours, name).set_data(value)
        getattr(theirs, name).set_data(value)
    x = Tensor(rng.normal(size=(2, 3, 9, 11)).astype(np.float32))

    def gradients(net):
        def loss(x):
            return (net(x) ** 2).sum()

        value, grads = ms.value_and_grad(loss, 0, net.trainable_params())(x)
        return [value.asnumpy(), grads[0].asnumpy(), *(g.asnumpy() for g in grads[1])]

    np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-4, atol=1e-5)
    for got, want in zip(gradients(ours), gradients(theirs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cpu_stacks_unfold_every_convolution_but_a_pointwise_one():
    from mindspore import nn

    from sdk_core import ModelSpec
    from sdk_core.model import spec as S
    from sdk_mindspore._layers import UnfoldConv2d

    spec = ModelSpec((3, 8, 8), [S.Conv2D(4, 3), S.Conv2D(4, 1), S.Conv2D(4, 1, stride=2), S.Flatten(), S.Dense(2)])
    cells = list(Stack("mindspore").build(spec).model.net.cells())
    assert [type(c) for c in cells[:3]] == [UnfoldConv2d, nn.Conv2d, UnfoldConv2d]


@pytest.mark.parametrize(
    ("shape", "batch"),
    [((5,), 4), ((3, 2, 2), 4), ((4,), 1), ((3, 1, 1), 1)],
    ids=["vectors", "images", "one-vector", "one-pixel"],
)
def test_batchnorm_steps_like_the_reference(shape, batch):
    import numpy as np

    from sdk_core import BatchNorm, Dense, Flatten, ModelSpec, Optimizer

    spec = ModelSpec(shape, [BatchNorm(momentum=0.3), Flatten(), Dense(2)])
    rng = np.random.default_rng(len(shape) + batch)
    x = rng.normal(2.0, 3.0, size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, 2, batch)
    stacks = [Stack(name).build(spec, seed=1) for name in ("mindspore", "numpy")]
    for stack in stacks:
        stack.train_step(optimizer=Optimizer("sgd", lr=0.1))(x, y)
    ours, reference = (s.get_weights() for s in stacks)
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(stacks[0].predict(x), stacks[1].predict(x), rtol=1e-4, atol=1e-4)
