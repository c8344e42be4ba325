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
