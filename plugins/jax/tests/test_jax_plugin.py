"""JAX plugin specifics: lazy import, device mapping, optax schedule, dtype, dropout seeding."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from sdk_core import DeviceInfo, Optimizer, Schedule, Stack, zoo


def test_entry_point_does_not_import_jax():
    code = "import sys, sdk_jax, sdk_core; sdk_core.get_manager().frameworks(); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_mapping():
    from sdk_jax._runtime import jax_device

    assert jax_device(DeviceInfo(kind="cpu")) == jax.devices("cpu")[0]


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule("step", warmup_steps=2, step_size=3, gamma=0.5),
        Schedule("cosine", warmup_steps=3, total_steps=10, min_lr=0.01),
    ],
)
def test_optax_schedule_equals_the_core_schedule(schedule):
    from sdk_jax._optim import schedule_fn

    fn = schedule_fn(0.1, schedule)
    got = [float(fn(jax.numpy.asarray(t))) for t in range(14)]
    assert got == pytest.approx([schedule.lr_at(0.1, t) for t in range(14)], rel=1e-6)


def test_float64_is_refused_clearly_before_the_plugin_runs():
    from sdk_core import NotAvailableError, get_manager

    assert "dtype:float64" in get_manager().framework("jax").unsupported
    with pytest.raises(NotAvailableError, match="framework 'jax' does not support dtype float64"):
        Stack("jax").build(zoo.mlp(), dtype="float64")


def test_dropout_training_is_seeded():
    x = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)
    y = np.arange(16) % 10

    def run(seed):
        stack = Stack("jax").build(zoo.mlp(dropout=0.5), seed=seed)
        stack.fit(x, y, epochs=2, batch_size=8, optimizer=Optimizer("sgd", lr=0.1))
        return stack.get_weights()["0.weight"]

    assert np.array_equal(run(1), run(1)) and not np.array_equal(run(1), run(2))


def test_residual_graph_trains_under_jit():
    from sdk_core import ModelSpec, Node
    from sdk_core.model import spec as S

    spec = ModelSpec.from_nodes(
        (8,),
        [
            Node("stem", S.Dense(16)),
            Node("h1", S.Dense(16)),
            Node("act", S.ReLU()),
            Node("h2", S.Dense(16)),
            Node("sum", S.Add(), ["h2", "stem"]),
            Node("head", S.Dense(3)),
        ],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    stack = Stack("jax").build(spec)
    history = stack.fit(x, y, epochs=20, batch_size=None, optimizer=Optimizer("adam", lr=0.01))
    assert "h2.weight" in stack.get_weights()
    assert history.loss[-1] < 0.8 * history.loss[0]


def test_image_layers_run_channels_last():
    """XLA's cpu convolutions are channels-last: an NCHW graph pays a transpose around each
    one, and reduce_window max pooling a select_and_scatter in backward (issue #34, item 9)."""
    from sdk_jax._layers import model_fn

    spec = zoo.lenet5()
    apply = model_fn(spec)
    params = {k: jax.numpy.asarray(v) for k, v in spec.init_weights().items()}
    x = np.zeros((4, 1, 32, 32), np.float32)
    grad = jax.grad(lambda p: apply(p, {}, x, True, jax.random.key(0))[0].sum())
    hlo = jax.jit(grad).lower(params).as_text()
    assert "stablehlo.convolution" in hlo
    assert "[b, f, 0, 1]" not in hlo and "[b, 0, 1, f]" in hlo
    assert "reduce_window" not in hlo and "select_and_scatter" not in hlo


def test_channels_last_layers_match_the_reference():
    """Every layer that meets a 4-d activation, run channels-last, against numpy: dense, softmax
    and layernorm over the width, cropping and overlapping pools, batchnorm."""
    from sdk_core.model import spec as S
    from sdk_core.testing.cases import inputs, random_weights, targets
    from sdk_jax._layers import model_fn

    spec = S.ModelSpec(
        input_shape=(2, 7, 7),
        layers=[
            S.Conv2D(3, 3, padding="same"),
            S.MaxPool2D(2),
            S.Dense(4),
            S.Softmax(),
            S.LayerNorm(),
            S.AvgPool2D(2, stride=1),
            S.BatchNorm(),
            S.ReLU(),
        ],
    )
    weights = random_weights(spec)
    x, y = inputs(spec), targets(spec, "mse")
    forward = jax.jit(lambda p, s: model_fn(spec)(p, s, x, False, jax.random.key(0))[0])
    assert "[b, 0, 1, f]" in forward.lower(weights, weights).as_text()
    stacks = [Stack(fw).build(spec) for fw in ("jax", "numpy")]
    for stack in stacks:
        stack.set_weights(weights)
    np.testing.assert_allclose(stacks[0].predict(x), stacks[1].predict(x), rtol=1e-5, atol=1e-6)
    losses = [float(s.train_step("mse", Optimizer("sgd", lr=0.1))(x, y)) for s in stacks]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    got, want = stacks[0].get_weights(), stacks[1].get_weights()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_operator_nodes_among_channels_last_layers_train_in_one_compiled_step():
    """Operator nodes compute in ONNX's NCHW between layers that keep images NHWC: a conv layer,
    a dilated MaxPool (JAX has no reduce_window gradient for it), a grouped Conv and a Gather
    of channels, then flatten and dense; forward and sgd steps equal numpy's, and the jitted
    step compiles once, not once per step."""
    from sdk_core import ModelSpec, Node
    from sdk_core.model import spec as S
    from sdk_core.testing.cases import inputs, random_weights, targets

    idx, weight = S.Constant(np.asarray([3, -1, 0], np.int64)), S.Weight((4, 2, 3, 3))
    spec = ModelSpec.from_nodes(
        (2, 9, 9),
        [
            Node("c", S.Conv2D(4, 3)),
            Node("pool", S.Op("MaxPool", ["c"], {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 0, 0, 1]})),
            Node("g", S.Op("Conv", ["pool", "W"], {"group": 2, "pads": [1, 1, 1, 1]}, weights={"W": weight})),
            Node("pick", S.Op("Gather", ["g", "idx"], {"axis": 1}, constants={"idx": idx})),
            Node("flat", S.Flatten()),
            Node("head", S.Dense(3)),
        ],
    )
    weights = random_weights(spec)
    x, y = inputs(spec), targets(spec, "mse")
    stacks = [Stack(fw).build(spec) for fw in ("jax", "numpy")]
    for stack in stacks:
        stack.set_weights(weights)
    np.testing.assert_allclose(stacks[0].predict(x), stacks[1].predict(x), rtol=1e-5, atol=1e-6)
    steps = [s.train_step("mse", Optimizer("sgd", lr=0.001)) for s in stacks]
    for step in steps:  # the first step compiles
        step(x, y)
    compiles = []
    compiled = "/jax/core/compile/backend_compile_duration"
    listener = lambda event, secs, **kw: compiles.append(event) if event == compiled else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        losses = [[float(step(x, y)) for _ in range(3)] for step in steps]
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    got, want = stacks[0].get_weights(), stacks[1].get_weights()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
