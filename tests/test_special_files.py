"""A FIFO (or another special file) given where the SDK reads a file is refused at once, by its
type, before anything opens it: opening a FIFO for reading blocks until a writer comes.

Each test watches the FIFO from a thread that opens its write end as soon as anyone opens it for
reading: a reader that opened it (the bug) is released with EOF instead of hanging, and the test
fails saying so."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from sdk_core import Stack, WeightsError, zoo
from sdk_core.compress import load as load_compressed
from sdk_core.errors import SdkError, SpecError
from sdk_core.export.writer import read_model
from sdk_core.model import sdkz
from sdk_core.model.data import load_split
from sdk_core.model.files import FileError, check_input, read_npy, read_text
from sdk_core.model.weights import load_weights, read_header, read_metadata
from sdk_core.runtime.checkpoint import CheckpointError, Checkpoints, Run
from sdk_core.runtime.stack import load_spec

REFUSED = "not a regular file"


@contextlib.contextmanager
def watched(fifo):
    """Yields a list that gets an entry each time something opened ``fifo`` for reading."""
    opened: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no reader has it open
            except OSError:
                time.sleep(0.002)
                continue
            opened.append(time.monotonic())
            os.close(fd)  # the reader sees EOF: it fails, it does not hang

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "model.safetensors"
    os.mkfifo(path)
    return path


def refused_unopened(fifo, call, error=SdkError):
    with watched(fifo) as opened, pytest.raises(error, match=REFUSED):
        call()
    assert not opened, f"{fifo} was opened for reading before its type was checked"


def test_check_input_names_each_kind_of_path(tmp_path, fifo):
    with pytest.raises(FileError, match="is a directory"):
        check_input(tmp_path)
    with pytest.raises(FileError, match="does not exist"):
        check_input(tmp_path / "absent")
    refused_unopened(fifo, lambda: check_input(fifo), FileError)
    with pytest.raises(FileError, match=REFUSED):
        check_input("/dev/null")


@pytest.mark.parametrize(
    "reader",
    [load_weights, read_header, read_metadata, load_spec, read_model, sdkz.read, sdkz.read_header],
    ids=lambda f: f.__qualname__,
)
def test_weights_readers_refuse_a_fifo(fifo, reader):
    refused_unopened(fifo, lambda: reader(fifo), WeightsError)


@pytest.mark.needs_framework("numpy")
def test_stack_load_and_compressed_load_refuse_a_fifo(fifo):
    refused_unopened(fifo, lambda: Stack("numpy", "cpu").load(str(fifo)), WeightsError)
    refused_unopened(fifo, lambda: load_compressed(fifo), WeightsError)
    with watched(fifo) as opened:
        assert not sdkz.is_sdkz(fifo)
    assert not opened


def test_text_npy_and_data_readers_refuse_a_fifo(tmp_path):
    for name in ("spec.json", "x.npy", "data.npz"):
        os.mkfifo(tmp_path / name)
    refused_unopened(tmp_path / "spec.json", lambda: read_text(tmp_path / "spec.json"), FileError)
    refused_unopened(tmp_path / "spec.json", lambda: zoo.resolve(str(tmp_path / "spec.json")), SpecError)
    refused_unopened(tmp_path / "x.npy", lambda: read_npy(tmp_path / "x.npy"), FileError)
    refused_unopened(tmp_path / "data.npz", lambda: load_split(str(tmp_path / "data.npz")), FileError)
    folder = tmp_path / "split"
    folder.mkdir()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.save(folder / f"{key}.npy", np.zeros((2, 3), np.float32))
    (folder / "x_test.npy").unlink()
    os.mkfifo(folder / "x_test.npy")
    refused_unopened(folder / "x_test.npy", lambda: load_split(str(folder)), FileError)


def test_a_fifo_among_the_checkpoints_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    os.mkfifo(folder / "step-0000000004.safetensors")
    run = Run(zoo.mlp().to_json(), {}, "cross_entropy", 10, 2)
    refused_unopened(
        folder / "step-0000000004.safetensors", lambda: Checkpoints(folder).load(run, None), CheckpointError
    )


def sdk(*args, cwd):
    """The CLI, killed after 60 s: a reader that blocks fails the test instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-m", "sdk_core", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60
    )


ONNX = importlib.util.find_spec("onnx") is not None  # sdk export asks for it before reading its input


@pytest.mark.needs_framework("numpy")
def test_cli_refuses_a_fifo_wherever_it_reads_a_file(tmp_path):
    good = tmp_path / "good.safetensors"
    Stack("numpy", "cpu").build(zoo.mlp()).save(str(good))
    for name in ("w.safetensors", "x.npy", "data.npz", "spec.json"):
        os.mkfifo(tmp_path / name)
    numpy = ("--framework", "numpy")
    commands = {
        "w.safetensors": [
            ("predict", "--weights", "w.safetensors", *numpy),
            ("bench", "--weights", "w.safetensors", "--framework", "numpy", "--device", "cpu"),
            ("compress", "--weights", "w.safetensors", "--out", "m.sdkz", *numpy),
            *([("export", "--weights", "w.safetensors", "--out", "m.onnx")] if ONNX else []),
        ],
        "x.npy": [("predict", "--weights", good, "--input", "x.npy", *numpy)],
        "data.npz": [
            ("predict", "--weights", good, "--data", "data.npz", *numpy),
            ("train", "--model", "mlp", "--data", "data.npz", *numpy),
        ],
        "spec.json": [("train", "--model", "spec.json", *numpy)],
    }
    for name, runs in commands.items():
        for args in runs:
            with watched(tmp_path / name) as opened:
                result = sdk(*args, cwd=tmp_path)
            assert not opened, f"sdk {' '.join(map(str, args))} opened the FIFO {name} for reading"
            assert result.returncode == 1, (args, result.stderr)
            assert result.stderr.count("\n") == 1 and REFUSED in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr


@pytest.mark.needs_framework("numpy")
def test_cli_resume_refuses_a_fifo_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    fifo = folder / "step-0000000004.safetensors"
    os.mkfifo(fifo)
    with watched(fifo) as opened:
        result = sdk(
            "train",
            "--model",
            "mlp",
            "--framework",
            "numpy",
            "--epochs",
            "1",
            "--checkpoint-dir",
            folder,
            "--resume",
            cwd=tmp_path,
        )
    assert not opened
    last = result.stderr.strip().splitlines()[-1]  # after the line saying what it trains
    assert result.returncode == 1 and last.startswith("sdk: error: checkpoint") and REFUSED in last, result.stderr
    assert "Traceback" not in result.stderr
