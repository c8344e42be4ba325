"""Tuning: the range test, the batch-size finder, optimizer and scale comparisons, the Optuna
search and `sdk tune`, on the NumPy reference."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sdk_core
from sdk_core import Optimizer, Schedule, SdkError, Stack, zoo
from sdk_core.tune import (
    compare_optimizers,
    find_batch_size,
    pareto,
    range_test,
    scale_spec,
    scale_sweep,
    suggest,
)
from sdk_core.tune.compare import ScalePoint

pytestmark = pytest.mark.skipif(
    "numpy" not in sdk_core.PluginManager().frameworks(), reason="needs the reference plugin sdk-numpy"
)
SDK = [sys.executable, "-m", "sdk_core"]
SPEC = zoo.mlp(input_dim=12, hidden=(32,), classes=3)


def data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (3, 12))
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(0, 1, (n, 12))).astype(np.float32)
    return x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4 :], y[n * 3 // 4 :]


def test_exponential_schedule_grows_and_step_refuses_growth():
    s = Schedule("exponential", gamma=10.0)
    assert [Optimizer("sgd", lr=1e-3, schedule=s).lr_at(t) for t in range(3)] == pytest.approx([1e-3, 1e-2, 1e-1])
    with pytest.raises(sdk_core.SpecError, match="'gamma' must be a number in"):
        Schedule("step", gamma=2.0)


def test_steepest_descent_is_found_on_a_known_curve():
    lrs = list(np.logspace(-5, 0, 50))
    smoothed = [1 / (1 + np.exp(4 * (np.log10(r) + 2.5))) for r in lrs]  # falls fastest at 10**-2.5
    steepest, min_over_10 = suggest(lrs, smoothed)
    assert 10**-2.8 < steepest < 10**-2.2
    assert min_over_10 == pytest.approx(lrs[int(np.argmin(smoothed))] / 10)


def test_range_test_suggests_a_rate_that_trains_and_restores_the_weights():
    x, y, xv, yv = data()
    stack = Stack("numpy").build(SPEC, seed=1)
    before = stack.get_weights()
    found = range_test(stack, x, y, "sgd", start=1e-5, end=1e3, steps=120, batch_size=16)
    for name, value in stack.get_weights().items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"'{name}' was not restored")
    assert found.stopped_early, "a sweep up to lr 1000 must diverge and stop"
    assert 1e-5 < found.suggested < found.lrs[-1] and found.min_over_10 < found.lrs[-1]
    assert len(found.lrs) == len(found.losses) == len(found.smoothed) < 120
    history = (
        Stack("numpy")
        .build(SPEC, seed=1)
        .fit(x, y, epochs=5, batch_size=16, optimizer=Optimizer("sgd", lr=found.suggested), validation_data=(xv, yv))
    )
    assert all(np.isfinite(history.loss)) and history.val_accuracy[-1] > 0.8


def test_batch_size_finder_confirms_by_trial_within_a_budget():
    stack = Stack("numpy").build(SPEC)
    used = stack.manager.read_memory(stack.device).used
    before = stack.get_weights()
    found = find_batch_size(stack, memory_budget=used + 64 * 2**20, max_batch=4096)
    assert (found.limit, found.limit_bytes) == ("memory budget", used + 64 * 2**20)  # a budget given wins
    assert 1 <= found.largest <= 4096 and 1 <= found.best <= found.largest and found.healthy
    fits = {t.batch_size: t.fits for t in found.trials}
    assert fits[found.largest]
    assert all(b <= found.largest for b, ok in fits.items() if ok)
    assert found.estimated >= 1 and found.estimate_error is not None
    np.testing.assert_array_equal(stack.get_weights()["0.weight"], before["0.weight"])
    with pytest.raises(SdkError, match="'memory_budget' must be a positive number"):
        find_batch_size(stack, memory_budget=0)
    empty = Stack("numpy").build(sdk_core.ModelSpec((4,), [sdk_core.ReLU()]))
    with pytest.raises(SdkError, match="no trainable parameters"):
        find_batch_size(empty, memory_budget=2**30)


def test_sdk_tune_batch_size_on_the_cpu_defaults_to_half_the_available_memory(tmp_path):
    """A first `sdk tune --what batch-size` needs no --memory-budget: it takes a stated share
    of the memory the cpu plugin says is available, and says so."""
    model, points = tmp_path / "small.json", tmp_path / "points.npz"
    model.write_text(SPEC.to_json())
    x, y, xt, yt = data()
    np.savez(points, x_train=x, y_train=y, x_test=xt, y_test=yt)
    available = sdk_core.get_manager().device("cpu").memory_free
    args = ["tune", "--framework", "numpy", "--model", str(model), "--data", str(points), "--what", "batch-size"]
    out = subprocess.run(SDK + [*args, "--epochs", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if line.startswith("memory budget: ")]
    assert len(said) == 1 and said[0].startswith("memory budget: 50 % of the "), out.stderr
    assert said[0].endswith("GiB (--memory-budget to change)") and " available = " in said[0], said
    assert abs(float(said[0].split("of the ")[1].split()[0].replace(",", "")) - available / 2**30) < 1, said
    assert "fit in the memory budget of " in out.stdout and "GiB, 50 % of the " in out.stdout, out.stdout


def test_optimizers_are_compared_on_the_same_budget():
    d = data()
    runs = compare_optimizers(lambda s: Stack("numpy").build(s, seed=2), SPEC, d, epochs=2, names=("sgd", "adam"))
    assert [r.name for r in runs] == ["sgd", "adam"]
    for run in runs:
        assert len(run.accuracy) == len(run.seconds) == len(run.steps) == 2
        assert run.steps == (6, 12) and run.seconds[1] > run.seconds[0] > 0 and run.lr > 0
    with pytest.raises(SdkError, match="unknown optimizer 'lion'"):
        compare_optimizers(lambda s: Stack("numpy").build(s), SPEC, d, names=("lion",))


def test_scales_change_the_widths_and_the_front_keeps_the_undominated():
    gpt = zoo.gpt()
    wide = scale_spec(gpt, 2.0, depth=2)
    assert wide.layers[0].dim == 128 and sum(isinstance(l, sdk_core.TransformerBlock) for l in wide.layers) == 4
    assert wide.output_shape == gpt.output_shape
    assert scale_spec(zoo.lenet5(), 0.5).param_count() < zoo.lenet5().param_count()
    points = [
        ScalePoint(1.0, 1, 100, 1, 1, True, 1.0, 0.80),
        ScalePoint(2.0, 1, 200, 1, 1, True, 1.0, 0.90),
        ScalePoint(4.0, 1, 400, 1, 1, True, 1.0, 0.85),
        ScalePoint(8.0, 1, 800, 1, 1, False),
    ]
    assert [p.width for p in pareto(points)] == [1.0, 2.0]
    swept = scale_sweep(
        lambda s: Stack("numpy").build(s), SPEC, data(), widths=(0.5, 64.0), epochs=1, memory_limit=2**20
    )
    assert swept[0].trained and swept[0].accuracy is not None
    assert not swept[1].trained and swept[1].memory_bytes > 2**20


def test_search_runs_optuna_and_resumes_from_its_storage(tmp_path):
    pytest.importorskip("optuna")
    from sdk_core.tune.search import search

    storage = tmp_path / "tune.db"
    make = lambda s: Stack("numpy").build(s)
    first = search(make, SPEC, data(), trials=3, epochs=1, storage=str(storage))
    assert set(first.best) == {"lr", "batch_size", "optimizer", "weight_decay"} and 0 <= first.best_accuracy <= 1
    again = search(make, SPEC, data(), trials=2, epochs=1, storage=str(storage))
    assert len(again.trials) == 5 and storage.exists()
    with pytest.raises(SdkError, match="'budget' must be a positive number"):
        search(make, SPEC, data(), budget=0, storage=str(storage))


def test_sdk_tune_reports_the_best_settings_and_refuses_bad_input(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    args = ["tune", "--framework", "numpy", "--model", "mlp", "--what", "lr", "--range-steps", "40", "--epochs", "1"]
    out = subprocess.run(SDK + [*args, "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["best"]) >= {"lr", "batch_size", "optimizer", "accuracy"}
    assert report["best"]["lr"] == report["lr"]["suggested"] and report["best"]["accuracy"] > 0.5
    spec = tmp_path / "relu.json"
    spec.write_text(sdk_core.ModelSpec((64,), [sdk_core.ReLU()]).to_json())
    for argv, message in (
        (["--what", "lr,nope"], "unknown part 'nope'"),
        (["--what", "search", "--budget", "0"], "must be a positive number of seconds"),
        (["--what", "batch-size", "--memory-budget", "lots"], "must be a positive size such as 4GiB"),
        (["--model", str(spec)], "has no trainable parameters"),
    ):
        bad = subprocess.run(
            SDK + ["tune", "--framework", "numpy", "--model", "mlp", *argv], capture_output=True, text=True, timeout=600
        )
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, (argv, bad.stderr)
