"""TensorFlow plugin specifics: lazy import, devices, layout, the digits job."""

import os
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from sdk_core import DeviceInfo, NotAvailableError, Optimizer, Schedule, Stack, get_manager, zoo


def test_entry_point_does_not_import_tensorflow():
    code = (
        "import sys, sdk_tensorflow, sdk_core; sdk_core.get_manager().frameworks(); "
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_strings():
    from sdk_tensorflow._runtime import device_name, tf_device

    assert device_name(DeviceInfo(kind="cpu")) == "/CPU:0"
    assert device_name(DeviceInfo(kind="cuda", index=2)) == "/GPU:2"
    assert device_name(DeviceInfo(kind="tpu", index=1)) == "/TPU:1"
    assert tf_device(DeviceInfo(kind="cpu")) == "/CPU:0"
    with pytest.raises(NotAvailableError, match="TensorFlow sees no GPU:3 for device cuda:3"):
        tf_device(DeviceInfo(kind="cuda", index=3))
    with pytest.raises(NotAvailableError, match="TensorFlow cannot drive npu:0"):
        device_name(DeviceInfo(kind="npu"))


def test_device_kinds_follow_the_installed_distribution():
    from sdk_tensorflow import DISTRIBUTIONS

    dist = next(d for d in DISTRIBUTIONS if list(metadata.distributions(name=d)))
    info = get_manager().framework("tensorflow")
    assert info.version == metadata.version(dist) and info.device_kinds == DISTRIBUTIONS[dist]
    if dist == "tensorflow-cpu":
        assert info.device_kinds == ("cpu",)


def test_keras_on_another_backend_is_refused_clearly():
    code = "import sdk_core; sdk_core.Stack('tensorflow').build(sdk_core.zoo.mlp())"
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    # Keras' numpy backend needs jax: with it the backend loads and is refused, without it the
    # import fails; either way one clear line names the cause
    assert (
        "needs Keras on the tensorflow backend, this process runs it on 'numpy'" in out.stderr
        or "needs Keras on the tensorflow backend, KERAS_BACKEND='numpy' failed to load" in out.stderr
    )


def test_float64_steps_follow_the_reference_closely():
    """Learning rates and bias corrections are computed in float64, like the reference."""
    spec = zoo.mlp(input_dim=5, hidden=(6,), classes=3)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    opt = Optimizer(
        "adamw", lr=0.01, weight_decay=0.1, schedule=Schedule("cosine", warmup_steps=1, total_steps=3, min_lr=0.001)
    )
    stacks = [Stack(name).build(spec, dtype="float64") for name in ("tensorflow", "numpy")]
    steps = [s.train_step("cross_entropy", opt) for s in stacks]
    for _ in range(4):
        losses = [float(step(x, y)) for step in steps]
        assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    mine, ref = (s.get_weights() for s in stacks)
    for name in ref:
        assert mine[name].dtype == np.float64
        np.testing.assert_allclose(mine[name], ref[name], rtol=1e-11, atol=1e-13, err_msg=name)


def test_keras_sgd_where_it_follows_the_core_rule():
    from sdk_tensorflow._framework import keras
    from sdk_tensorflow._optim import CoreOptimizer, make_optimizer

    assert type(make_optimizer(Optimizer("sgd", momentum=0.9, nesterov=True), "float32")) is keras.optimizers.SGD
    assert type(make_optimizer(Optimizer("sgd", schedule=Schedule("step")), "float32")) is keras.optimizers.SGD
    for rule, dtype in (
        (Optimizer("sgd", momentum=0.9, schedule=Schedule("step")), "float32"),
        (Optimizer("sgd", weight_decay=0.1), "float32"),
        (Optimizer("sgd"), "float64"),
        (Optimizer("adam"), "float32"),
    ):
        assert isinstance(make_optimizer(rule, dtype), CoreOptimizer)


def test_dropout_masks_follow_the_seed():
    spec = zoo.gpt(vocab_size=9, max_len=6, dim=8, heads=2, blocks=1, dropout=0.5)
    x = np.random.default_rng(0).integers(0, 9, (4, 6))
    y = np.random.default_rng(1).integers(0, 9, (4, 6))
    steps = [Stack("tensorflow").build(spec, seed=5).train_step("cross_entropy", Optimizer("sgd")) for _ in range(2)]
    losses = [float(step(x, y)) for step in steps]
    assert losses[0] == losses[1]


def test_conv_kernels_are_stored_hwio_and_exposed_canonical():
    stack = Stack("tensorflow").build(zoo.lenet5(), seed=3)
    conv = stack.model.vars["0.weight"][0]
    assert tuple(conv.shape) == (5, 5, 1, 6)
    canonical = stack.get_weights()["0.weight"]
    assert canonical.shape == (6, 1, 5, 5)
    np.testing.assert_array_equal(canonical, zoo.lenet5().init_weights(3)["0.weight"])


def test_graph_spec_with_a_residual_add_trains():
    from sdk_core.model import spec as S

    spec = S.ModelSpec.from_nodes(
        (2, 6, 6),
        [
            S.Node("stem", S.Conv2D(4, 3, padding="same")),
            S.Node("bn", S.BatchNorm()),
            S.Node("act", S.ReLU()),
            S.Node("conv", S.Conv2D(4, 3, padding="same")),
            S.Node("sum", S.Add(), ["conv", "stem"]),
            S.Node("pool", S.GlobalAvgPool()),
            S.Node("head", S.Dense(3)),
        ],
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 2, 6, 6)).astype(np.float32), rng.integers(0, 3, 32)
    stack = Stack("tensorflow").build(spec, seed=0)
    assert set(stack.get_weights()) == {p.name for p in spec.layout()}
    history = stack.fit(x, y, epochs=20, batch_size=None, optimizer=Optimizer("adam", lr=0.02))
    assert len(history.loss) == 20 and all(np.isfinite(history.loss))
    assert history.loss[-1] < 0.8 * history.loss[0]


def test_the_data_parallel_cluster_comes_from_one_host_or_tf_config():
    """One host: worker r listens on MASTER_PORT + 1 + r; several hosts without TF_CONFIG or
    SLURM: refused naming TF_CONFIG (a TensorFlow job cannot guess the other hosts)."""
    from sdk_core.plugins.requests import World
    from sdk_tensorflow._parallel import _resolver

    world = World(rank=1, size=2, address="10.0.0.5", port=4000)
    spec = _resolver(world, {"LOCAL_WORLD_SIZE": "2"}).cluster_spec().as_dict()
    assert spec == {"worker": ["10.0.0.5:4001", "10.0.0.5:4002"]}
    with pytest.raises(NotAvailableError, match="set TF_CONFIG on each worker"):
        _resolver(world, {"LOCAL_WORLD_SIZE": "1"})
    from sdk_tensorflow._parallel import strategy

    with pytest.raises(NotAvailableError, match="run the job through sdk launch, torchrun or srun"):
        strategy(2)  # this process was started by no launcher


def test_the_step_keeps_two_traces_whatever_the_batch_sizes():
    # the first batch size gets an exact trace, every other shares one with a free batch axis
    spec = zoo.get("mlp")
    stack = Stack("tensorflow").build(spec, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 64)).astype(np.float32), rng.integers(0, 10, 70)
    history = stack.fit(x, y, epochs=2, batch_size=32)
    stack.fit(x[:45], y[:45], epochs=1, batch_size=20)
    (step,) = stack._steps.values()
    assert np.isfinite(history.loss).all()
    traces = {id(t) for t in step.run.traces.values()}
    assert len(step.run.traces) == 4 and len(traces) == 2  # batches of 32, 6, 20 and 5
