"""The CLI on bad input: one line on stderr, exit code 1, nothing overwritten."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sdk_core import save_weights, zoo


def sdk(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sdk_core", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def one_line_error(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sdk: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_framework_and_device():
    one_line_error(sdk("train", "--framework", "caffe"), "unknown framework 'caffe'")
    one_line_error(sdk("predict", "--weights", "x.safetensors", "--framework", "caffe"), "does not exist")


def test_unknown_device(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(zoo.mlp().to_json())
    result = sdk("train", "--model", str(spec), "--device", "quantum:7")
    one_line_error(result, "unknown device 'quantum:7'")


def test_malformed_spec_file_and_unknown_model(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"input_shape": [64], "layers": [{"type": "dense", "units": -3}]}')
    one_line_error(sdk("train", "--model", str(bad)), "layer 0 (dense): 'units' must be a positive int (got -3)")
    bad.write_text("{oops")
    one_line_error(sdk("train", "--model", str(bad)), "spec is not valid JSON")
    one_line_error(sdk("train", "--model", str(tmp_path / "none.json")), "spec file", "does not exist")
    one_line_error(sdk("train", "--model", "vgg16"), "unknown model 'vgg16'")


def test_missing_and_corrupt_weights(tmp_path):
    one_line_error(sdk("predict", "--weights", str(tmp_path / "gone.safetensors")), "does not exist")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"garbage" * 10)
    one_line_error(sdk("predict", "--weights", str(corrupt)), "not a valid safetensors file")


@pytest.mark.needs_framework("onnxruntime")
def test_training_an_inference_only_framework_is_refused_before_it_is_announced():
    for command in (("train", "--model", "mlp"), ("tune", "--model", "mlp", "--what", "lr", "--range-steps", "3")):
        result = sdk(*command, "--epochs", "1", "--framework", "onnxruntime")
        one_line_error(result, "onnxruntime runs inference only")
        assert "training" not in result.stdout + result.stderr and "tuned" not in result.stdout, result.stderr


def test_argument_errors_exit_1_with_one_line():
    one_line_error(sdk("train", "--epochs", "many"), "must be an int >= 1 (got 'many')")
    one_line_error(sdk("teleport"), "invalid choice: 'teleport'")


def test_failed_run_overwrites_nothing(tmp_path):
    out = tmp_path / "keep.safetensors"
    save_weights(out, {"a": np.ones(3, np.float32)})
    before = out.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text('{"input_shape": [64], "layers": []}')
    one_line_error(sdk("train", "--model", str(bad), "--out", str(out)), "spec has no layers")
    assert out.read_bytes() == before
    one_line_error(sdk("predict", "--weights", str(out), "--output", str(out)), "is also an input of this command")
    assert out.read_bytes() == before
    one_line_error(sdk("predict", "--weights", str(out)), "holds no model spec")


def test_tables_and_json_agree():
    table = sdk("devices")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["device", "vendor"]
    data = json.loads(sdk("devices", "--json").stdout)
    assert data[0]["id"] == "cpu:0" and "cpu:0" in table.stdout
