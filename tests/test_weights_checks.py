"""Weights that are NaN or infinite, or stored as integers, are refused when they are loaded or
set, naming the tensor; ``allow_nonfinite=True`` (``--allow-nonfinite``) loads non-finite ones
on purpose. A float of another width is converted to the model's dtype."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from safetensors.numpy import save_file

from sdk_core import Stack, WeightsError
from sdk_core.model.spec import Dense, ModelSpec, ReLU

pytestmark = pytest.mark.needs_framework("numpy")  # every check loads into a numpy stack

SPEC = ModelSpec((4,), [Dense(3), ReLU(), Dense(2)])


def write(path, fill=None, dtype=np.float32):
    """A weights file of SPEC as ``sdk train --out`` writes it, every tensor ``fill`` (default:
    the initial weights), stored as ``dtype``."""
    weights = SPEC.init_weights(0)
    tensors = {k: (v if fill is None else np.full_like(v, fill)).astype(dtype) for k, v in weights.items()}
    save_file(tensors, str(path), metadata={"format": "sdk_core/1", "spec": SPEC.to_json()})
    return path


@pytest.mark.parametrize("fill", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_weights_file_is_refused_naming_the_tensor(tmp_path, fill):
    path = write(tmp_path / "w.safetensors", fill)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the plugin: nothing runs
        with pytest.raises(WeightsError) as caught:
            Stack("numpy", "cpu").load(str(path))
    message = str(caught.value)
    assert f"'{path}'" in message
    assert "tensor '0.weight' holds NaN or infinity (12 of 12 values)" in message
    assert "allow_nonfinite=True" in message


def test_allow_nonfinite_loads_them_on_purpose(tmp_path):
    path = write(tmp_path / "w.safetensors", np.nan)
    stack = Stack("numpy", "cpu").load(str(path), allow_nonfinite=True)
    assert np.isnan(stack.get_weights()["2.bias"]).all()
    assert np.isnan(stack.predict(np.ones((1, 4), np.float32))).all()


def test_integer_weights_are_refused_a_float_of_another_width_converted(tmp_path):
    path = write(tmp_path / "w.safetensors", 1, dtype=np.int32)
    with pytest.raises(WeightsError, match=r"tensor '0\.\w+' is stored as int32; the model expects float32"):
        Stack("numpy", "cpu").load(str(path))
    with pytest.raises(WeightsError, match=r"is stored as int32"):
        Stack("numpy", "cpu").load(str(path), allow_nonfinite=True)
    path = write(tmp_path / "w.safetensors", dtype=np.float16)
    got = Stack("numpy", "cpu").load(str(path)).get_weights()
    for name, value in SPEC.init_weights(0).items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], value.astype(np.float16).astype(np.float32))


def test_set_weights_follows_the_same_rule():
    stack = Stack("numpy", "cpu").build(SPEC)
    good = stack.get_weights()
    bad = {**good, "2.weight": np.full_like(good["2.weight"], np.nan)}
    with pytest.raises(WeightsError, match=r"tensor '2\.weight' holds NaN or infinity \(6 of 6 values\)"):
        stack.set_weights(bad)
    for name, value in stack.get_weights().items():  # nothing was set
        np.testing.assert_array_equal(value, good[name])
    with pytest.raises(WeightsError, match=r"tensor '0\.bias' is stored as int64; the model expects float32"):
        stack.set_weights({**good, "0.bias": np.zeros(3, np.int64)})
    stack.set_weights(bad, allow_nonfinite=True)
    assert np.isnan(stack.get_weights()["2.weight"]).all()


def sdk(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sdk_core", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize("fill", [np.nan, np.inf], ids=["nan", "inf"])
def test_cli_refuses_non_finite_weights_in_one_line(tmp_path, fill):
    write(tmp_path / "w.safetensors", fill)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 4), np.float32))
    for args in [
        ("predict", "--weights", "w.safetensors", "--input", x, "--framework", "numpy"),
        ("bench", "--weights", "w.safetensors", "--framework", "numpy", "--device", "cpu", "--batch-sizes", "1"),
    ]:
        result = sdk(*args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr  # no traceback, no RuntimeWarning
        assert result.stderr.startswith("sdk: error: weights in 'w.safetensors': tensor '0.")
        assert "holds NaN or infinity" in result.stderr
        assert "--allow-nonfinite" in result.stderr
    allowed = sdk(
        "predict",
        "--weights",
        "w.safetensors",
        "--input",
        x,
        "--framework",
        "numpy",
        "--allow-nonfinite",
        "--json",
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.stderr


def test_cli_refuses_integer_weights_in_one_line(tmp_path):
    write(tmp_path / "w.safetensors", 1, dtype=np.int32)
    result = sdk("predict", "--weights", "w.safetensors", "--framework", "numpy", "--allow-nonfinite", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "is stored as int32; the model expects float32" in result.stderr
