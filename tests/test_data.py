"""Streaming data (memory-mapped arrays, iterables of batches, `--data`) and the portable
out-of-memory error."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sdk_core
from sdk_core import DeviceOutOfMemory, FrameworkInfo, ModelSpec, SdkError, Stack, hookimpl, zoo
from sdk_core.errors import is_out_of_memory, requested_memory
from sdk_core.model.data import load_split
from sdk_core.model.files import FileError, read_npy

pytestmark = pytest.mark.skipif(
    "numpy" not in sdk_core.PluginManager().frameworks(), reason="needs the reference plugin sdk-numpy"
)
SDK = [sys.executable, "-m", "sdk_core"]
SPEC = zoo.mlp(input_dim=12, hidden=(16,), classes=3)


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 12)).astype(np.float32), rng.integers(0, 3, n)


class Batches:
    """An iterable of (x, y) batches that starts afresh on each iter()."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch = x, y, batch

    def __iter__(self):
        for s in range(0, len(self.x), self.batch):
            yield self.x[s : s + self.batch], self.y[s : s + self.batch]


def test_an_iterable_of_batches_trains_like_the_arrays():
    x, y = data()
    arrays = Stack("numpy").build(SPEC, seed=1)
    streamed = Stack("numpy").build(SPEC, seed=1)
    a = arrays.fit(x, y, epochs=3, batch_size=16, shuffle=False)
    b = streamed.fit(Batches(x, y, 16), epochs=3, validation_data=Batches(x, y, 40))
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-6)
    for name, w in arrays.get_weights().items():
        np.testing.assert_allclose(streamed.get_weights()[name], w, rtol=1e-6, err_msg=name)
    assert streamed.evaluate(Batches(x, y, 7)) == pytest.approx(arrays.evaluate(x, y))
    assert len(b.val_accuracy) == 3


def test_iterables_that_cannot_serve_fail_clearly():
    x, y = data()
    stack = Stack("numpy").build(SPEC)
    once = iter(Batches(x, y, 16))
    with pytest.raises(SdkError, match="iterator, read up in the first epoch"):
        stack.fit(once, epochs=2)
    with pytest.raises(SdkError, match=r"each batch must be an \(x, y\) pair"):
        stack.fit(iter([x[:4]]))
    with pytest.raises(SdkError, match="targets 'y' are missing"):
        stack.fit(x)
    with pytest.raises(sdk_core.SpecError, match="input has shape"):
        stack.fit([(x[:4, :5], y[:4])].__iter__())
    with pytest.raises(SdkError, match="gave no batch"):
        stack.fit(Batches(x[:0], y[:0], 4))
    with pytest.raises(SdkError, match="'validation_split' needs arrays"):
        stack.fit(Batches(x, y, 16), validation_split=0.2)


def test_memory_mapped_arrays_train_and_stay_on_disk(tmp_path):
    x, y = data(200)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    xm, ym = read_npy(tmp_path / "x.npy", mmap=True), read_npy(tmp_path / "y.npy", mmap=True)
    assert isinstance(xm, np.memmap)
    mapped = Stack("numpy").build(SPEC, seed=2).fit(xm, ym, epochs=2, batch_size=32, seed=5)
    loaded = Stack("numpy").build(SPEC, seed=2).fit(x, y, epochs=2, batch_size=32, seed=5)
    np.testing.assert_allclose(mapped.loss, loaded.loss, rtol=1e-6)
    bad = x.copy()
    bad[150, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(sdk_core.SpecError, match="input sample 150 holds NaN"):
        Stack("numpy").build(SPEC).fit(read_npy(tmp_path / "bad.npy", mmap=True), y)


def test_data_files_load_and_malformed_ones_are_named(tmp_path):
    x, y = data(50)
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    assert [len(a) for a in load_split(str(tmp_path / "ok.npz"))] == [50, 50, 10, 10]
    folder = tmp_path / "set"
    folder.mkdir()
    for name, value in {"x_train": x, "y_train": y, "x_test": x[:10], "y_test": y[:10]}.items():
        np.save(folder / f"{name}.npy", value)
    split = load_split(str(folder))
    assert isinstance(split[0], np.memmap)
    np.savez(tmp_path / "missing.npz", x_train=x, y_train=y)
    np.savez(tmp_path / "uneven.npz", x_train=x, y_train=y[:3], x_test=x, y_test=y)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npz").write_text("not a zip")
    for path, message in (
        ("missing.npz", "has no array 'x_test'"),
        ("uneven.npz", "x_train has 50 samples, y_train 3"),
        ("text.npz", "is not an .npz of numeric arrays"),
        ("nowhere.npz", "does not exist"),
    ):
        with pytest.raises(FileError, match=message):
            load_split(str(tmp_path / path))
    (folder / "y_test.npy").unlink()
    with pytest.raises(FileError, match=r"has no y_test\.npy"):
        load_split(str(folder))


def test_sdk_train_takes_data(tmp_path):
    out = subprocess.run(
        SDK + ["train", "--model", "gpt", "--data", "counting_text", "--epochs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["test"]["accuracy"] > 0
    x, y = data(120)
    spec = tmp_path / "mlp.json"
    spec.write_text(SPEC.to_json())
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    out = subprocess.run(
        SDK + ["train", "--model", str(spec), "--data", str(tmp_path / "mine.npz"), "--epochs", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    np.savez(tmp_path / "wrong.npz", x_train=x[:, :5], y_train=y, x_test=x[:20], y_test=y[:20])
    for data_arg, message in (
        (str(tmp_path / "wrong.npz"), "input has shape (120, 5), the model needs (batch, 12)"),
        (str(tmp_path / "nope.npz"), "does not exist"),
        ("counting_text", "the counting_text data needs a (tokens,) int64 input"),
    ):
        bad = subprocess.run(
            SDK + ["train", "--model", str(spec), "--data", data_arg, "--epochs", "1"], capture_output=True, text=True
        )
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


class Hungry:
    """A framework whose step and predict really run out of host memory."""

    SDK_CORE_API = 1

    @hookimpl
    def sdk_framework_info(self):
        return FrameworkInfo(name="hungry", version="1.0", device_kinds=("cpu",))

    @hookimpl
    def sdk_build_model(self, request):
        return {} if request.framework == "hungry" else None

    @hookimpl
    def sdk_set_weights(self, request):
        return True if request.framework == "hungry" else None

    @hookimpl
    def sdk_get_weights(self, request):
        return (
            {p.name: np.zeros(p.shape, np.float32) for p in request.spec.layout()}
            if request.framework == "hungry"
            else None
        )

    @hookimpl
    def sdk_make_train_step(self, request):
        return (lambda x, y: np.empty(2**62, np.uint8)) if request.framework == "hungry" else None

    @hookimpl
    def sdk_make_predict(self, request):
        return (lambda x: np.empty(2**62, np.uint8)) if request.framework == "hungry" else None


def test_out_of_memory_is_one_portable_error_naming_the_device():
    manager = sdk_core.PluginManager(autoload=False)
    assert manager.register(Hungry(), "hungry").ok
    stack = Stack("hungry", manager=manager).build(ModelSpec((4,), [sdk_core.Dense(2)]))
    x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)
    with pytest.raises(DeviceOutOfMemory, match=r"out of memory on cpu:0 while training at batch size 4") as info:
        stack.fit(x, y, batch_size=4)
    assert isinstance(info.value.__cause__, MemoryError) and info.value.device == "cpu:0"
    with pytest.raises(DeviceOutOfMemory, match="while predicting at batch size 256"):
        stack.predict(x)
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123 bytes"))
    assert requested_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "2.00 GiB"
    assert str(DeviceOutOfMemory("cuda:0", "training", "2.00 GiB")).startswith(
        "out of memory on cuda:0 while training (it asked for 2.00 GiB more)"
    )
