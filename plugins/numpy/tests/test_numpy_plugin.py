"""The NumPy plugin through the core: discovery, determinism, dtypes."""

import subprocess
import sys

import numpy as np

import sdk_core
from sdk_core import Stack, zoo


def test_discovered_as_the_numpy_framework():
    info = sdk_core.get_manager().frameworks()["numpy"]
    assert info.installed and info.device_kinds == ("cpu",) and info.plugin == "numpy"
    assert info.version == np.__version__


def test_entry_point_module_is_light():
    code = "import sys, sdk_numpy; print(sorted(m for m in sys.modules if m.startswith('sdk_numpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sdk_numpy']"


def test_deterministic_given_a_seed_with_dropout():
    x = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 64)
    spec = zoo.mlp(dropout=0.3)

    def run(seed):
        stack = Stack("numpy").build(spec, seed=seed)
        stack.fit(x, y, epochs=2, batch_size=16, seed=seed)
        return stack.get_weights()

    a, b, c = run(4), run(4), run(5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], c["0.weight"])


def test_float64_models_compute_in_float64():
    stack = Stack("numpy").build(zoo.mlp(), dtype="float64")
    assert stack.get_weights()["0.weight"].dtype == np.float64
    assert stack.predict(np.zeros((2, 64))).dtype == np.float64
    stack32 = Stack("numpy").build(zoo.mlp())
    assert stack32.predict(np.zeros((2, 64))).dtype == np.float32


def test_gpt_learns_to_count():
    tokens, targets = sdk_core.counting_text(n=256, length=8, vocab_size=8)
    stack = Stack("numpy").build(zoo.gpt(vocab_size=8, max_len=8, dim=32, heads=4, blocks=1), seed=0)
    history = stack.fit(tokens, targets, epochs=6, batch_size=32, optimizer=sdk_core.Optimizer("adam", lr=3e-3))
    assert history.loss[-1] < 0.2 * history.loss[0]
    assert stack.evaluate(tokens, targets)["accuracy"] > 0.95
