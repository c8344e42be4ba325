"""Compression on the NumPy stack: pruning, schedules, weight sharing, structured pruning,
int8 quantization, the .sdkz file and ``sdk compress``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from sdk_core import Optimizer, SdkError, Stack, digits, zoo
from sdk_core import compress as C

pytest.importorskip("sdk_numpy", reason="compression tests train on the sdk-numpy plugin")


@pytest.fixture(scope="module")
def data():
    return digits(image_size=None, seed=0)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    stack = Stack("numpy").build(zoo.mlp(hidden=(32, 16)))
    stack.fit(data[0], data[1], epochs=8, optimizer=Optimizer("adam", lr=3e-3))
    path = tmp_path_factory.mktemp("w") / "mlp.safetensors"
    stack.save(str(path))
    return path


def fresh(path):
    return Stack("numpy").load(str(path))


def test_layer_pruning_removes_exactly_the_smallest(trained):
    stack = fresh(trained)
    before = stack.get_weights()
    masks = C.prune(stack, 0.75, scope="layer")
    after = stack.get_weights()
    for name, mask in masks.items():
        assert mask.size - np.count_nonzero(mask) == round(0.75 * mask.size)
        assert (after[name][mask == 0] == 0).all()
        kept = np.abs(before[name][mask == 1])
        assert kept.min() >= np.abs(before[name][mask == 0]).max()
    assert set(masks) == {"0.weight", "2.weight", "4.weight"}  # biases are not pruned


def test_global_pruning_ratios_and_keep(trained):
    stack = fresh(trained)
    masks = C.prune(stack, 0.8, scope="global", keep=["4"])
    assert "4.weight" not in masks
    assert C.sparsity(masks) == pytest.approx(0.8, abs=1e-3)
    stack = fresh(trained)
    masks = C.prune(stack, 0.5, scope="layer", ratios={"0": 0.9})
    assert 1 - masks["0.weight"].mean() == pytest.approx(0.9, abs=1e-3)
    assert 1 - masks["2.weight"].mean() == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": 1.0}, r"\[0, 1\)"),
        ({"amount": -0.1}, r"\[0, 1\)"),
        ({"amount": 0.5, "scope": "row"}, "unknown prune scope"),
        ({"amount": 0.5, "keep": ["nope"]}, "names no prunable"),
        ({"amount": 0.5, "ratios": {"conv": 0.5}}, "names no prunable"),
    ],
)
def test_bad_pruning_input(trained, kwargs, message):
    with pytest.raises(SdkError, match=message):
        C.prune(fresh(trained), **kwargs)


def test_masks_hold_through_adam_fine_tuning(trained, data):
    stack = fresh(trained)
    masks = C.prune(stack, 0.9)
    stack.fit(data[0], data[1], epochs=2, optimizer=Optimizer("adam", lr=1e-2))
    weights = stack.get_weights()
    assert all((weights[n][m == 0] == 0).all() for n, m in masks.items())
    assert any((weights[n][m == 1] != 0).all() for n, m in masks.items())


def test_polynomial_schedule():
    s = C.Schedule(final=0.9, steps=4)
    values = [s.sparsity(e) for e in range(6)]
    assert values == sorted(values) and values[3] == values[5] == pytest.approx(0.9)
    assert values[0] == pytest.approx(0.9 * (1 - 0.75**3))
    assert C.Schedule.parse("0.95:6:0.5:2") == C.Schedule(0.95, 0.5, 6, 2.0)
    for bad in ("1.2", "0.9:0", "0.5:3:0.8", "x"):
        with pytest.raises(SdkError):
            C.Schedule.parse(bad)


def test_gradual_pruning_reaches_the_target_and_beats_one_shot(trained, data):
    one_shot = fresh(trained)
    C.prune(one_shot, 0.9)
    stack = fresh(trained)
    seen = []
    C.prune_gradually(stack, data[0], data[1], C.Schedule(0.9, steps=3), 5, on_epoch=lambda e, s, l: seen.append(s))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.9, abs=1e-3) and seen[0] < 0.9
    accuracy = stack.evaluate(data[2], data[3])["accuracy"]
    assert accuracy > one_shot.evaluate(data[2], data[3])["accuracy"] + 0.05 and accuracy > 0.85


def test_kmeans_linear_init_and_sharing(trained):
    values = np.concatenate([np.full(50, -1.0), np.full(30, 0.0), np.full(20, 2.0)])
    centroids, index = C.kmeans(values, 3)
    assert sorted(centroids.tolist()) == [-1.0, 0.0, 2.0] and len(set(index.tolist())) == 3
    stack = fresh(trained)
    C.prune(stack, 0.5)
    books = C.share_weights(stack, {"dense": 3})
    weights = stack.get_weights()
    for name, book in books.items():
        assert len(np.unique(weights[name][stack.masks.get(name, 1) != 0])) <= 8
        assert book.bits <= 3
    with pytest.raises(SdkError, match="1 to 16"):
        C.share_weights(fresh(trained), {"dense": 17})


def test_centroid_fine_tuning_moves_whole_clusters(trained, data):
    stack = fresh(trained)
    books = C.share_weights(stack, 4, data[0], data[1], finetune_epochs=1, lr=1e-4)
    weights = stack.get_weights()
    for name, book in books.items():
        assert len(np.unique(weights[name])) <= len(book.centroids)
        np.testing.assert_array_equal(weights[name], book.centroids[book.indices])


def test_structured_pruning_equals_the_zeroed_original(trained, data):
    stack = fresh(trained)
    slim = C.prune_structured(stack, 0.5)
    assert slim.spec.layers[0].units == 16 and slim.spec.layers[2].units == 8 and slim.spec.layers[4].units == 10
    kept0 = np.flatnonzero(np.isin(stack.get_weights()["0.bias"], slim.get_weights()["0.bias"]))
    # the original with the removed units' outgoing weights zeroed computes exactly the slim model
    weights = stack.get_weights()
    drop0 = np.setdiff1d(np.arange(32), kept0)
    weights["2.weight"][drop0] = 0
    drop1 = np.setdiff1d(np.arange(16), np.flatnonzero(np.isin(weights["2.bias"], slim.get_weights()["2.bias"])))
    weights["4.weight"][drop1] = 0
    stack.set_weights(weights)
    np.testing.assert_allclose(slim.predict(data[2]), stack.predict(data[2]), rtol=1e-5, atol=1e-5)
    with pytest.raises(SdkError, match=r"cannot handle layer 0 \(embedding\)"):
        C.prune_structured(Stack("numpy").build(zoo.gpt(blocks=1)), 0.5)


def test_structured_conv_channels_follow_through_flatten(data):
    spec = zoo.lenet5(input_shape=(1, 16, 16))
    stack = Stack("numpy").build(spec, seed=3)
    slim = C.prune_structured(stack, 0.5, keep=["0"])
    assert slim.spec.layers[0].filters == 6 and slim.spec.layers[3].filters == 8
    assert slim.spec.param_count() < spec.param_count()
    assert slim.predict(np.zeros((2, 1, 16, 16), np.float32)).shape == (2, 10)


def test_int8_quantization(trained, data):
    stack = fresh(trained)
    float_weights = stack.get_weights()
    float_accuracy = stack.evaluate(data[2], data[3])["accuracy"]
    q = C.quantize(stack, data[0], method="percentile")
    for name, codes in q.codes.items():
        assert codes.dtype == np.int8 and np.abs(codes.astype(int)).max() <= 127
        step = q.scales[name].reshape((1, -1))
        assert (np.abs(stack.get_weights()[name] - float_weights[name]) <= step / 2 + 1e-7).all()
    assert q.evaluate(data[2], data[3])["accuracy"] > float_accuracy - 0.02
    with pytest.raises(SdkError, match="unknown quantization"):
        C.quantize(fresh(trained), data[0], scheme="int4")


def test_save_load_report(trained, data, tmp_path):
    stack = fresh(trained)
    C.prune(stack, 0.9)
    books = C.share_weights(stack, {"dense": 5})
    out = tmp_path / "m.sdkz"
    report = C.save_compressed(stack, out, books)
    assert report["bytes"] == out.stat().st_size < report["dense_bytes"] / 8
    assert {r["name"] for r in report["layers"]} == set(stack.get_weights())
    served = C.load(out)
    np.testing.assert_array_equal(served.predict(data[2]), stack.predict(data[2]))
    assert set(served.masks) == set(stack.masks)


def run_sdk(*args):
    return subprocess.run([sys.executable, "-m", "sdk_core", *args], capture_output=True, text=True, timeout=600)


def test_cli_compress_and_serve(trained, tmp_path):
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()
    out, plot = tmp_path / "m.sdkz", tmp_path / "m.png"
    args = ["compress", "--weights", str(trained), "--framework", "numpy", "--out", str(out)]
    drawing = importlib.util.find_spec("matplotlib") is not None  # --plot needs the plot extra
    result = run_sdk(*args, "--finetune-epochs", "3", "--prune", "0.8", "--json", *(["--plot", str(plot)] * drawing))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"compression_ratio", "accuracy_before", "accuracy_after", "layers"} <= set(report)
    assert report["compression_ratio"] == pytest.approx(trained.stat().st_size / out.stat().st_size)
    assert not drawing or plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert hashlib.sha256(trained.read_bytes()).hexdigest() == digest
    served = run_sdk("predict", "--weights", str(out), "--framework", "numpy", "--json")
    assert json.loads(served.stdout)["accuracy"] == pytest.approx(report["accuracy_after"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prune", "1.0"], "--prune"),
        (["--share-bits", "conv=17"], "1 to 16"),
        (["--share-bits", "dense=x"], "share bits"),
        (["--quantize", "int4"], "--quantize"),
        (["--quantize", "int8", "--share-bits", "5"], "not both"),
        (["--prune-schedule", "0.9:two"], "prune schedule"),
    ],
)
def test_cli_bad_input(trained, tmp_path, extra, message):
    out = tmp_path / "m.sdkz"
    result = run_sdk("compress", "--weights", str(trained), "--framework", "numpy", "--out", str(out), *extra)
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_never_writes_onto_its_input(trained):
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()
    result = run_sdk("compress", "--weights", str(trained), "--framework", "numpy", "--out", str(trained))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(trained.read_bytes()).hexdigest() == digest
