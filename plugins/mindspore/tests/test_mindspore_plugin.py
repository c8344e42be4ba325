"""MindSpore plugin specifics: lazy import, one device target per process, tanh accuracy,
operator nodes beyond the kit's cases (1-d and 3-d windows, ties, canonical names)."""

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


def _steps_like_the_reference(spec, x):
    """Forward and one sgd step (mse) of ``spec`` on mindspore and numpy, same weights."""
    import numpy as np

    from sdk_core import Optimizer
    from sdk_core.testing.cases import random_weights

    weights = random_weights(spec)
    stacks = [Stack(name).build(spec) for name in ("mindspore", "numpy")]
    y = np.zeros((len(x), *spec.output_shape), np.float32)
    losses = []
    for stack in stacks:
        stack.set_weights(weights)
        losses.append(float(stack.train_step("mse", Optimizer("sgd", lr=0.5))(x, y)))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    ours, reference = (s.get_weights() for s in stacks)
    assert set(ours) == set(weights)
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(stacks[0].predict(x), stacks[1].predict(x), rtol=1e-4, atol=1e-5)


def _window_specs():
    from sdk_core import ModelSpec
    from sdk_core.testing.op_cases import c, op, w

    clip = {"lo": c(-0.3), "hi": c(0.3)}  # ties at the bounds, whose gradient Clip passes
    return {
        "1d": ModelSpec.from_nodes(
            (4, 9),
            [
                op("pre", "Mul", "input", "g", weights={"g": w(4, 9)}),
                op(
                    "conv",
                    "Conv",
                    "pre",
                    "W",
                    "B",
                    weights={"W": w(6, 2, 3), "B": w(6)},
                    group=2,
                    dilations=[2],
                    pads=[2, 1],
                ),
                op("clip", "Clip", "conv", "lo", "hi", constants=clip),
                op("y", "MaxPool", "clip", kernel_shape=[3], strides=[2], pads=[1, 1]),
            ],
        ),
        "2d_ties": ModelSpec.from_nodes(
            (2, 5, 5),
            [
                op("pre", "Mul", "input", "g", weights={"g": w(2, 5, 5)}),
                op("clip", "Clip", "pre", "lo", "hi", constants=clip),
                op("y", "MaxPool", "clip", kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 1, 0]),
            ],
        ),
        "3d": ModelSpec.from_nodes(
            (2, 3, 4, 4),
            [
                op(
                    "conv",
                    "Conv",
                    "input",
                    "W",
                    weights={"W": w(3, 2, 2, 1, 2)},
                    strides=[1, 2, 1],
                    pads=[0, 1, 1, 1, 0, 0],
                ),
                op("y", "AveragePool", "conv", kernel_shape=[2, 2, 2], pads=[1, 0, 1, 0, 1, 0], count_include_pad=0),
            ],
        ),
    }


@pytest.mark.parametrize("case", ["1d", "2d_ties", "3d"])
def test_operator_windows_step_like_the_reference(case):
    # the kit's windows are 2-d (ops.unfold); 1-d and 3-d take the strided-slice path. Max
    # pooling's gradient goes to each window's first maximum, ties (at Clip's bounds) included
    import numpy as np

    spec = _window_specs()[case]
    x = np.random.default_rng(3).normal(size=(3, *spec.input_shape)).astype(np.float32) * 2
    _steps_like_the_reference(spec, x)


def test_operator_nodes_keep_canonical_names_in_sequential_and_graph_specs():
    # a sequential spec's operator nodes read the layer before; a weight key may hold '.', '-'
    import numpy as np

    from sdk_core import Dense, ModelSpec
    from sdk_core.model.spec import Op
    from sdk_core.testing.op_cases import op, w

    sequential = ModelSpec((5,), [Dense(4), Op("Tanh"), Op("LogSoftmax")])
    graph = ModelSpec.from_nodes(
        (3, 5),
        [op("y", "LayerNormalization", "input", "ln.scale-1", "b", weights={"ln.scale-1": w(5), "b": w(5)})],
    )
    rng = np.random.default_rng(4)
    _steps_like_the_reference(sequential, rng.normal(size=(4, 5)).astype(np.float32))
    _steps_like_the_reference(graph, rng.normal(size=(4, 3, 5)).astype(np.float32))
    assert set(Stack("mindspore").build(graph).get_weights()) == {"y.ln.scale-1", "y.b"}
