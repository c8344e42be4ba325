"""sdk-onnxruntime beyond the kit: execution providers without silent fallback, what `sdk
devices`, `sdk stacks`, `sdk predict` and `sdk bench` show, and choosing it for inference."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnxruntime as ort
import pytest

import sdk_core
from sdk_core import NotAvailableError, SdkWarning, Stack, zoo
from sdk_core.runtime import select
from sdk_onnxruntime import _providers

SDK = [sys.executable, "-m", "sdk_core"]
MISSING = "NoSuchExecutionProvider"


def test_the_cpu_gets_the_cpu_provider_and_cuda_asks_for_cuda():
    assert _providers.requested("cpu", {}) == ("CPUExecutionProvider",)
    assert _providers.requested("cuda", {}) == ("CUDAExecutionProvider",)
    env = {_providers.ENV: "TensorrtExecutionProvider, CUDAExecutionProvider"}
    assert _providers.requested("cuda", env) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    with pytest.raises(NotAvailableError, match="no execution provider for device kind 'tpu'"):
        _providers.requested("tpu", {})


def test_a_missing_provider_fails_with_strict_and_warns_without():
    available = ort.get_available_providers()
    with pytest.raises(NotAvailableError, match=f"strict: onnxruntime does not offer {MISSING}"):
        _providers.choose([MISSING], available, strict=True)
    with pytest.warns(SdkWarning, match=f"does not offer {MISSING}.*running on CPUExecutionProvider"):
        assert _providers.choose([MISSING], available, strict=False) == ["CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing: nothing said
        assert _providers.choose(["CPUExecutionProvider"], available, strict=True) == ["CPUExecutionProvider"]
    with pytest.raises(NotAvailableError, match="could not load CUDAExecutionProvider"):
        _providers.check_active(["CUDAExecutionProvider"], ["CPUExecutionProvider"], strict=True)


def test_a_requested_provider_reaches_the_stack(monkeypatch):
    monkeypatch.setenv(_providers.ENV, MISSING)
    with pytest.raises(NotAvailableError, match=f"strict: onnxruntime does not offer {MISSING}"):
        Stack("onnxruntime", strict=True).build(zoo.mlp())
    with pytest.warns(SdkWarning, match=MISSING):
        stack = Stack("onnxruntime").build(zoo.mlp())
    assert stack.predict(np.zeros((2, 64), np.float32)).shape == (2, 10)


def test_devices_show_the_providers_and_stacks_mark_inference_only():
    devices = subprocess.run(SDK + ["devices", "--json"], capture_output=True, text=True, check=True)
    cpu = next(d for d in json.loads(devices.stdout) if d["kind"] == "cpu")
    assert cpu["backends"]["onnxruntime"] == ["CPUExecutionProvider"]
    text = subprocess.run(SDK + ["devices"], capture_output=True, text=True, check=True).stdout
    assert "onnxruntime (CPUExecutionProvider)" in text
    stacks = json.loads(subprocess.run(SDK + ["stacks", "--json"], capture_output=True, text=True, check=True).stdout)
    ort_row = next(s for s in stacks if s["framework"] == "onnxruntime")
    assert ort_row["train"] is False and ort_row["auto"] is False


def test_fastest_policy_considers_onnxruntime_for_inference_only():
    manager = sdk_core.get_manager()
    timed: dict[str, list[str]] = {"train": [], "infer": []}
    for task in timed:

        def timer(fw, dev, spec, batch, task=task):
            timed[task].append(fw.name)
            return 0.0 if fw.name == "onnxruntime" else 1.0

        fw, _ = select.choose(manager, "fastest", zoo.mlp(), 8, "cpu", False, timer, task)
        assert (fw.name == "onnxruntime") == (task == "infer")
    assert "onnxruntime" in timed["infer"] and "onnxruntime" not in timed["train"]
    chosen = Stack.auto("fastest", spec=zoo.mlp(), device="cpu", task="infer")
    assert chosen.framework.name in {fw.name for fw, _ in sdk_core.usable_stacks(task="infer")}


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    spec = zoo.lenet5(input_shape=(1, 16, 16))
    x_train, y_train, x_test, y_test = sdk_core.digits(image_size=16)
    stack = Stack("numpy").build(spec)
    stack.fit(x_train, y_train, epochs=6, batch_size=32, optimizer=sdk_core.Optimizer("adam", lr=3e-3))
    path = tmp_path_factory.mktemp("lenet") / "lenet.safetensors"
    stack.save(str(path))
    return path, stack.evaluate(x_test, y_test)["accuracy"]


def test_predict_serves_a_model_trained_elsewhere(lenet):
    path, accuracy = lenet
    out = subprocess.run(
        SDK + ["predict", "--framework", "onnxruntime", "--weights", str(path), "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_bench_reports_float32_and_int8_side_by_side(lenet):
    path, accuracy = lenet
    out = subprocess.run(
        SDK
        + ["bench", "--weights", str(path), "--framework", "onnxruntime,numpy", "--batch-sizes", "1,32"]
        + ["--repeats", "2", "--min-time", "0.01", "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    rows = {s["stack"]: s for s in report["stacks"]}
    fp32, int8 = rows["onnxruntime/cpu:0"], rows["onnxruntime/cpu:0 int8"]
    assert fp32["precision"] == "float32" and int8["precision"] == "int8"
    assert fp32["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert int8["accuracy"] >= accuracy - 0.01
    assert int8["model_bytes"] * 2 < fp32["model_bytes"]
    for row in (fp32, int8):
        for batch in row["batches"]:
            assert batch["train"]["status"] == "unsupported"
            assert batch["infer"]["status"] == "ok" and batch["infer"]["latency_s"]["p50"] > 0
    assert rows["numpy/cpu:0"]["batches"][0]["train"]["status"] == "ok"
    fastest = {f["batch_size"]: f for f in report["fastest_inference"]}
    assert set(fastest) == {1, 32} and fastest[32]["best_training_stack"] == "numpy/cpu:0"
