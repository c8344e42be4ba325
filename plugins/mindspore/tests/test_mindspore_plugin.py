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
