"""The README's main job, through the real CLI, on the NumPy plugin (MLP for speed)."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("sdk_numpy", reason="the main job needs the sdk-numpy plugin")
pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")


def sdk(*args):
    return subprocess.run([sys.executable, "-m", "sdk_core", *args], capture_output=True, text=True, timeout=600)


def test_train_save_then_predict_from_the_file(tmp_path):
    weights = tmp_path / "mlp.safetensors"
    train = sdk(
        "train",
        "--framework",
        "numpy",
        "--model",
        "mlp",
        "--epochs",
        "8",
        "--lr",
        "3e-3",
        "--out",
        str(weights),
        "--json",
    )
    assert train.returncode == 0, train.stderr
    report = json.loads(train.stdout)
    assert len(report["history"]["loss"]) == 8 and report["test"]["accuracy"] >= 0.95
    predict = sdk("predict", "--weights", str(weights), "--framework", "numpy", "--json")
    assert predict.returncode == 0, predict.stderr
    assert json.loads(predict.stdout)["accuracy"] == pytest.approx(report["test"]["accuracy"])
    text = sdk("predict", "--weights", str(weights), "--framework", "numpy")
    assert "accuracy" in text.stdout and text.returncode == 0


def test_progress_lines_per_epoch_on_stderr(tmp_path):
    train = sdk("train", "--framework", "numpy", "--model", "mlp", "--epochs", "2")
    assert train.returncode == 0, train.stderr
    epochs = [l for l in train.stderr.splitlines() if l.startswith("epoch ")]
    assert len(epochs) == 2 and "loss" in epochs[0] and "val_acc" in epochs[1] and "[" in epochs[0]
    assert "test accuracy" in train.stdout
