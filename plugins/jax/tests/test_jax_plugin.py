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
