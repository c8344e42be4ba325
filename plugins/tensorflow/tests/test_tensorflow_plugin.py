"""TensorFlow plugin specifics: lazy import, devices, layout, the digits job."""
import json
import subprocess
import sys

import numpy as np

from sdk_core import DeviceInfo, Stack, zoo


def test_entry_point_does_not_import_tensorflow():
    code = ("import sys, sdk_tensorflow, sdk_core; sdk_core.get_manager().frameworks(); "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_strings():
    from sdk_tensorflow._runtime import tf_device

    assert tf_device(DeviceInfo(kind="cpu")) == "/CPU:0"
    assert tf_device(DeviceInfo(kind="cuda", index=2)) == "/GPU:2"


def test_conv_kernels_are_stored_hwio_and_exposed_canonical():
    stack = Stack("tensorflow").build(zoo.lenet5(), seed=3)
    conv = stack.model.vars["0.weight"][0]
    assert tuple(conv.shape) == (5, 5, 1, 6)
    canonical = stack.get_weights()["0.weight"]
    assert canonical.shape == (6, 1, 5, 5)
    np.testing.assert_array_equal(canonical, zoo.lenet5().init_weights(3)["0.weight"])


def test_lenet5_on_digits_through_the_cli(tmp_path):
    out = tmp_path / "lenet.safetensors"
    run = subprocess.run([sys.executable, "-m", "sdk_core", "train", "--framework", "tensorflow", "--epochs", "8",
                          "--out", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["test"]["accuracy"] >= 0.95
