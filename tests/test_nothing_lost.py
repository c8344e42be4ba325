"""Nothing lost, no traceback: outputs never land on inputs, training never saves non-finite
weights, checks come before allocation, and every malformed input is one clear line."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sdk_core
from sdk_core import Optimizer, SdkError, SpecError, Stack, WeightsError, save_weights, zoo
from sdk_core.model.files import atomic_write, check_output, read_npy
from sdk_core.runtime.training import TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
needs_digits = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")


def sdk(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sdk_core", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdk: error: ") and len(lines[0]) <= 320, result.stderr
    assert fragment in lines[0], lines[0]


# -- data loss ----------------------------------------------------------------------------------
@pytest.mark.needs_framework("numpy")
@needs_digits
def test_no_command_writes_onto_a_file_it_reads(tmp_path):
    weights = tmp_path / "w.safetensors"
    assert (
        sdk("train", "--model", "mlp", "--epochs", "1", "--framework", "numpy", "--out", str(weights)).returncode == 0
    )
    before = weights.read_bytes()
    one_line_error(sdk("predict", "--weights", str(weights), "--output", str(weights)), "also an input")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 64), np.float32))
    one_line_error(sdk("predict", "--weights", str(weights), "--input", str(x), "--output", str(x)), "also an input")
    spec = tmp_path / "m.json"
    spec.write_text(zoo.mlp().to_json())
    one_line_error(sdk("train", "--model", str(spec), "--out", str(spec)), "also an input")
    assert weights.read_bytes() == before and json.loads(spec.read_text())["name"] == "mlp"


def test_outputs_are_checked_before_any_work(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SdkError, match="not a regular file"):
        check_output(fifo)
    with pytest.raises(SdkError, match="is a directory"):
        check_output(tmp_path)
    with pytest.raises(SdkError, match="does not exist"):
        check_output(tmp_path / "missing" / "w.safetensors")
    # the CLI refuses before training: a failure takes well under the time of an epoch
    one_line_error(sdk("train", "--model", "lenet5", "--epochs", "50", "--out", str(tmp_path)), "is a directory")
    one_line_error(sdk("train", "--model", "lenet5", "--epochs", "50", "--out", str(fifo)), "not a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_saves_follow_the_umask_and_sweep_what_a_killed_writer_left(tmp_path):
    target = tmp_path / "w.bin"
    stale = tmp_path / f".w.bin.{2**22 + 12345}.abc.tmp"  # a pid that is not running
    stale.write_bytes(b"half a file")
    old = os.umask(0o027)
    try:
        atomic_write(target, b"complete")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"complete" and not stale.exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_kill_9_during_saves_tears_nothing_and_leaves_no_temporary(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from kill_save import kill_during_saves
    finally:
        sys.path.pop(0)
    counts = kill_during_saves(tmp_path, kills=10, mib=4)
    assert counts["kills"] == 10 and counts["torn"] == 0 and counts["temporaries_after_next_save"] == 0


@pytest.mark.needs_framework("numpy")
@pytest.mark.parametrize(
    "optimizer, poison",
    [(Optimizer("sgd", lr=1e30), False), (Optimizer("sgd", lr=0.1), True)],
    ids=["huge-learning-rate", "nan-in-the-inputs"],
)
def test_divergence_stops_training_and_keeps_finite_weights(tmp_path, optimizer, poison):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((256, 64)).astype(np.float32), rng.integers(0, 10, 256)
    stack = Stack("numpy").build(zoo.mlp(), seed=0)
    stack.fit(x, y, epochs=1, optimizer=Optimizer("sgd", lr=0.01))
    good = stack.get_weights()
    path = tmp_path / "w.safetensors"
    stack.save(str(path))
    saved, _ = sdk_core.load_weights(path)
    if poison:
        x[37, 5] = np.nan
        with pytest.raises(SpecError, match="input sample 37 holds NaN"):
            stack.fit(x, y, epochs=2, optimizer=optimizer)
    else:
        with pytest.raises(TrainingDiverged, match=r"training diverged at epoch 1, step \d+ of 8"):
            stack.fit(x, y, epochs=2, optimizer=optimizer)
    for name, value in stack.get_weights().items():
        assert np.isfinite(value).all()
        np.testing.assert_array_equal(value, good[name])
    stack.save(str(path))  # what is saved after the failure is the good model
    loaded, _ = sdk_core.load_weights(path)
    assert all(np.array_equal(loaded[k], saved[k]) for k in good)


def test_non_finite_weights_are_never_saved(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, {"a": np.ones(3, np.float32)})
    before = path.read_bytes()
    with pytest.raises(WeightsError, match="'a' holds NaN or infinity"):
        save_weights(path, {"a": np.array([1.0, np.inf], np.float32)})
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": float("inf")}, "'lr' must be a finite number > 0.0"),
        ({"beta1": 1}, "'beta1' must be a finite number >= 0.0 and < 1.0"),
        ({"beta2": 0}, "'beta2' must be a finite number > 0.0 and < 1.0"),
        ({"eps": 0}, "'eps' must be > 0 for adam"),
        ({"eps": "x"}, "'eps' must be a finite number >= 0.0 (got 'x')"),
        ({"schedule": {"kind": "cosine", "total": 10}}, "'schedule' has an unknown field 'total'"),
    ],
)
def test_optimizer_settings_are_checked_when_made(kwargs, message):
    with pytest.raises(SpecError) as info:
        Optimizer(**kwargs)
    assert message in str(info.value)


# -- checks before allocation ----------------------------------------------------------------------
@pytest.mark.needs_framework("numpy")
def test_a_small_file_claiming_a_huge_model_is_refused_before_building(tmp_path):
    spec = {"input_shape": [64], "layers": [{"type": "dense", "units": 6_000_000}]}
    path = tmp_path / "w.safetensors"
    save_weights(
        path,
        {"0.weight": np.zeros((64, 10), np.float32), "0.bias": np.zeros(10, np.float32)},
        {"spec": json.dumps(spec)},
    )
    one_line_error(sdk("predict", "--weights", str(path), "--framework", "numpy"), "the model needs (64, 6000000)")


@pytest.mark.needs_framework("numpy")
def test_models_larger_than_the_device_are_refused_from_the_spec():
    with pytest.raises(SdkError, match=r"needs about .* TiB of memory .* cpu:0 has"):
        Stack("numpy").build({"input_shape": [64], "layers": [{"type": "dense", "units": 2_000_000_000}]})
    padded = {
        "input_shape": [1, 8, 8],
        "layers": [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1_000_000}],
    }
    with pytest.raises(SdkError, match="needs about"):
        Stack("numpy").build(padded)


def test_npy_headers_are_read_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**10, 64)})
        f.write(b"\0" * 1000)
    with pytest.raises(SdkError, match=r"truncated: its header claims 2\.3 TiB"):
        read_npy(path)
    np.save(tmp_path / "c.npy", np.ones((2, 3), complex))
    with pytest.raises(SdkError, match="holds complex128 values"):
        read_npy(tmp_path / "c.npy")
    np.save(tmp_path / "s.npy", np.array(["a"]))
    with pytest.raises(SdkError, match="holds <U1 values"):
        read_npy(tmp_path / "s.npy")
    with pytest.raises(SdkError, match="is a directory"):
        read_npy(tmp_path)


def test_digit_images_are_bounded():
    one_line_error(sdk("train", "--image-size", "1024"), "'image_size' must be a multiple of 8 from 8 to 256")
    one_line_error(sdk("train", "--seed", "-1"), "--seed: must be an int >= 0 (got -1)")


# -- malformed input is one clear line ------------------------------------------------------------
@pytest.mark.needs_framework("numpy")
def test_api_arguments_are_checked():
    stack = Stack("numpy").build(zoo.gpt())
    tokens = np.zeros((2, 32), np.int64)
    for call, message in (
        (lambda: stack.predict(tokens, batch_size=0), "'batch_size' must be a positive int"),
        (lambda: stack.fit(tokens, tokens, seed=-1), "'seed' must be an int >= 0"),
        (lambda: stack.predict(np.full((2, 32), 64)), "token id 64 is outside the vocabulary [0, 64)"),
        (lambda: stack.predict(np.full((2, 32), -1)), "token id -1 is outside the vocabulary"),
    ):
        with pytest.raises(SdkError) as info:
            call()
        assert message in str(info.value)


def test_long_or_multi_line_values_are_capped_in_messages():
    with pytest.raises(SdkError) as info:
        sdk_core.ModelSpec.from_dict({"input_shape": [3], "layers": [{"type": "x" * 100_000 + "\nsecond line"}]})
    assert len(str(info.value)) <= 300 and "\n" not in str(info.value)


# -- checkpoint and resume ------------------------------------------------------------------------
@pytest.mark.needs_framework("numpy")
@needs_digits
def test_a_run_killed_with_sigkill_resumes_with_the_same_loss_curve(tmp_path):
    """`sdk train --checkpoint-dir` killed with SIGKILL mid-run, then `--resume`: the loss curve is
    bitwise the uninterrupted one's (NumPy), and only the newest checkpoints are kept."""
    import signal
    import time

    train = ["-m", "sdk_core", "train", "--framework", "numpy", "--model", "mlp", "--epochs", "12", "--json"]
    full = json.loads(
        subprocess.run([sys.executable, *train], capture_output=True, text=True, timeout=300, check=True).stdout
    )["history"]["loss"]
    ckpt = tmp_path / "ckpt"
    args = [*train, "--checkpoint-dir", str(ckpt), "--checkpoint-every", "7", "--keep-checkpoints", "2"]
    victim = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(ckpt.glob("step-*.safetensors"))) < 2:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    kept = sorted(ckpt.glob("step-*.safetensors"))
    assert 1 <= len(kept) <= 3, kept  # a kill between writing the newest and removing the oldest leaves 3
    resumed = subprocess.run([sys.executable, *args, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["history"]["loss"] == full
    assert len(list(ckpt.glob("step-*.safetensors"))) == 2
    assert not list(ckpt.glob("*.tmp"))


@pytest.mark.needs_framework("numpy")
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 64)).astype(np.float32), rng.integers(0, 10, 40)
    Stack("numpy").build(zoo.mlp()).fit(x, y, epochs=1, batch_size=8, checkpoint_dir=str(tmp_path))
    with pytest.raises(SdkError, match="belongs to another run: its optimizer differs"):
        Stack("numpy").build(zoo.mlp()).fit(
            x, y, epochs=2, batch_size=8, optimizer=Optimizer("sgd"), checkpoint_dir=str(tmp_path), resume=True
        )
    with pytest.raises(SdkError, match="'resume' needs a 'checkpoint_dir'"):
        Stack("numpy").build(zoo.mlp()).fit(x, y, resume=True)
    with pytest.raises(SdkError, match="'checkpoint_every' needs a 'checkpoint_dir'"):
        Stack("numpy").build(zoo.mlp()).fit(x, y, checkpoint_every=5)
