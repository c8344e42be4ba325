"""``sdk bench`` and ``sdk_core.bench``: real measurements on the NumPy plugin, and reporting
rules (unavailable sensors, out of memory, the recommended batch size) with an in-process
plugin whose device, sensors and memory limit the test controls."""

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

import sdk_core
from sdk_core import (
    Attention,
    Conv2D,
    Dense,
    DeviceInfo,
    FrameworkInfo,
    MemoryReading,
    ModelSpec,
    PluginError,
    PowerReading,
    SdkError,
    bench,
    hookimpl,
    zoo,
)
from sdk_core.bench.stats import Latency, Summary, percentile
from sdk_core.model.estimate import forward_flops, training_flops


def tiny_mlp():
    return zoo.mlp(input_dim=8, hidden=(16,), classes=3)


# -- statistics ---------------------------------------------------------------------------------
def test_percentiles_interpolate_between_closest_ranks():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([4, 1, 3, 2], 100) == 4
    values = list(range(1, 101))  # rank 0.95 * 99 = 94.05 -> 95 + 0.05
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    rng = np.random.default_rng(0)
    sample = rng.exponential(size=37).tolist()
    for q in (50, 95, 99):
        assert percentile(sample, q) == pytest.approx(np.percentile(sample, q))
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_and_latency():
    s = Summary.of([30.0, 10.0, 20.0, 25.0])
    assert (s.median, s.low, s.high, s.n) == (22.5, 10.0, 30.0, 4)
    assert s.spread == pytest.approx(20 / 22.5)
    lat = Latency.of([0.001] * 98 + [0.010, 0.020])
    assert lat.p50 == 0.001 and lat.p99 == pytest.approx(0.0101)  # rank 98.01
    assert lat.p50 <= lat.p95 <= lat.p99 and lat.n == 100
    assert lat.mean == pytest.approx((0.098 + 0.03) / 100)


# -- FLOPs: hand-computed counts ----------------------------------------------------------------
def test_flops_of_dense_conv_and_attention_by_hand():
    dense = ModelSpec(input_shape=(64,), layers=[Dense(32), Dense(10)])
    assert forward_flops(dense) == 2 * 64 * 32 + 2 * 32 * 10
    conv = ModelSpec(input_shape=(3, 8, 8), layers=[Conv2D(4, 3)])  # output (4, 6, 6)
    assert forward_flops(conv) == 2 * (3 * 3 * 3) * (4 * 6 * 6)
    attn = ModelSpec(input_shape=(5, 8), layers=[Attention(2)])  # T=5, D=8
    projections = 4 * 2 * 5 * 8 * 8
    scores = mixing = 2 * 5 * 5 * 8
    assert forward_flops(attn) == projections + scores + mixing
    assert training_flops(attn) == 3 * forward_flops(attn)


# -- the recommendation rule --------------------------------------------------------------------
def phase(samples_per_s):
    s = Summary.of([samples_per_s])
    return bench.Phase("ok", "", 1, 1, s, s)


def test_recommends_the_smallest_batch_within_90_percent_of_the_best():
    batches = [
        bench.BatchResult(b, phase(v), phase(v)) for b, v in ((1, 100.0), (8, 500.0), (32, 950.0), (128, 1000.0))
    ]
    batch, text = bench.recommend(batches)
    assert batch == 32 and "90%" in text and "1,000 samples/s at batch 128" in text
    oom = bench.Phase("out of memory", "MemoryError")
    batch, text = bench.recommend(batches[:2] + [bench.BatchResult(32, oom, oom)])
    assert batch == 8 and "batch 32 ran out of memory" in text
    assert bench.recommend([bench.BatchResult(1, oom, oom)])[0] is None


def test_out_of_memory_is_recognised_by_type_message_and_cause():
    class OutOfMemoryError(RuntimeError):  # named like torch's
        pass

    assert bench.is_out_of_memory(MemoryError())
    assert bench.is_out_of_memory(OutOfMemoryError("CUDA"))
    assert bench.is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while allocating"))
    try:
        try:
            raise MemoryError("no room")
        except MemoryError as exc:
            raise PluginError("toy", "sdk_build_model", "MemoryError: no room") from exc
    except PluginError as wrapped:
        assert bench.is_out_of_memory(wrapped)
    assert not bench.is_out_of_memory(ValueError("shape mismatch"))


# -- an in-process plugin: a device with a known peak, controllable sensors and memory ---------
class Toy:
    """Framework 'toy' on device 'toydev:0' (peak 1 GFLOP/s). Its step is a real numpy matmul
    and raises MemoryError above ``limit`` samples, like a device that is full."""

    SDK_CORE_API = 1

    def __init__(self, power=None, limit=1000, delay=0.0):
        self.power, self.limit, self.delay = power, limit, delay

    @hookimpl
    def sdk_framework_info(self):
        return FrameworkInfo(name="toy", version="1.0", device_kinds=("toydev",))

    @hookimpl
    def sdk_probe_devices(self):
        return [DeviceInfo(kind="toydev", name="toy device", peak_flops={"float32": 1e9})]

    @hookimpl
    def sdk_build_model(self, request):
        return {} if request.framework == "toy" else None

    @hookimpl
    def sdk_set_weights(self, request):
        if request.framework != "toy":
            return None
        request.model.update(request.weights)
        return True

    @hookimpl
    def sdk_get_weights(self, request):
        return dict(request.model) if request.framework == "toy" else None

    @hookimpl
    def sdk_make_train_step(self, request):
        if request.framework != "toy":
            return None
        w = request.model["0.weight"]

        def step(x, y):
            if len(x) > self.limit:
                raise MemoryError(f"toy device holds {self.limit} samples, asked for {len(x)}")
            time.sleep(self.delay)
            return float(np.mean(x @ w))

        return step

    @hookimpl
    def sdk_make_predict(self, request):
        if request.framework != "toy":
            return None
        return lambda x: np.asarray(x) @ request.model["0.weight"]

    @hookimpl
    def sdk_read_memory(self, device):
        return MemoryReading(used=1000, peak=5000, source="toy counter") if device.kind == "toydev" else None

    @hookimpl
    def sdk_read_power(self, device):
        if device.kind != "toydev" or self.power is None:
            return None
        return PowerReading(energy_j=self.power * time.perf_counter(), source="toy energy counter")


def toy_manager(**kwargs):
    m = sdk_core.PluginManager(autoload=False)
    assert m.register(Toy(**kwargs), "toy").ok
    return m


def toy_run(manager, batch_sizes=(1, 8), steps=2):
    spec = ModelSpec(input_shape=(4,), layers=[Dense(3)], name="toy")
    return bench.run(spec, [("toy", "toydev:0")], batch_sizes, steps=steps, warmup=1, repeats=3, manager=manager)


def test_power_the_plugin_cannot_read_is_reported_unavailable_never_a_number():
    report = toy_run(toy_manager(power=None))
    for b in report.stacks[0].batches:
        for p in (b.train, b.infer):
            assert p.ok and p.energy is None
            assert p.to_dict()["energy"] == "unavailable"
            assert any("no plugin reads power on toydev:0" in n for n in p.notes)
    text = bench.format_report(report)
    assert "energy: no plugin reads power on toydev:0" in text
    json.dumps(report.to_dict())


def test_energy_and_power_come_from_the_counter_and_utilisation_from_the_peak():
    report = toy_run(toy_manager(power=50.0, delay=0.002), steps=10)  # >= 60 ms timed
    train = report.stacks[0].batches[1].train
    assert train.energy.watts == pytest.approx(50.0, rel=0.05)
    assert train.energy.joules_per_sample == pytest.approx(train.energy.joules / (8 * 10 * 3))
    assert train.energy.source == "toy energy counter"
    flops = report.training_flops  # 3 x 2 x 4 x 3
    assert flops == 72 and train.flop_per_s == pytest.approx(train.samples_per_s.median * 72)
    assert train.utilisation == pytest.approx(train.flop_per_s / 1e9)
    assert train.memory == bench.Memory(5000, "toy counter")


def test_a_batch_too_big_for_the_device_is_reported_out_of_memory():
    huge = 2**20  # a real 16 MiB input batch; the toy device holds 1000 samples
    report = toy_run(toy_manager(limit=1000), batch_sizes=(1, 8, huge, 2 * huge))
    stack = report.stacks[0]
    statuses = [b.train.status for b in stack.batches]
    assert statuses == ["ok", "ok", "out of memory", "skipped"]
    assert "toy device holds 1000 samples" in stack.batches[2].train.reason
    assert stack.batches[3].train.reason == f"batch {huge} ran out of memory"
    assert stack.batches[2].infer.ok  # inference needs no room for training, so it still runs
    assert stack.recommended_batch_size in (1, 8)
    assert f"batch {huge} ran out of memory" in stack.recommendation
    data = json.loads(json.dumps(report.to_dict()))
    assert data["stacks"][0]["batches"][2]["train"] == {
        "status": "out of memory",
        "reason": stack.batches[2].train.reason,
    }
    assert "out of memory" in bench.format_report(report)


def test_bad_settings_give_one_line_errors():
    m = toy_manager()
    spec = ModelSpec(input_shape=(4,), layers=[Dense(3)])
    with pytest.raises(SdkError, match=r"'batch_sizes' must be positive ints \(got \[0\]\)"):
        bench.run(spec, [("toy", "toydev:0")], (0,), manager=m)
    with pytest.raises(SdkError, match="'repeats' must be an int >= 1"):
        bench.run(spec, [("toy", "toydev:0")], repeats=0, manager=m)
    with pytest.raises(SdkError, match="framework 'toy' cannot run on cpu:0"):
        bench.run(spec, [("toy", "cpu")], manager=m)


def test_plot_needs_matplotlib_with_a_clear_error(monkeypatch):
    from sdk_core.bench import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(SdkError, match=r"^--plot needs matplotlib: pip install matplotlib$"):
        plot.require_matplotlib()


# -- real measurements on the NumPy plugin ------------------------------------------------------
@pytest.fixture(scope="module")
def numpy_report():
    pytest.importorskip("sdk_numpy", reason="real measurements need the sdk-numpy plugin")
    return bench.run(tiny_mlp(), [("numpy", "cpu")], (1, 4, 16), steps=3, warmup=1, repeats=3)


def test_numpy_measurements(numpy_report):
    report = numpy_report
    assert report.batch_sizes == (1, 4, 16) and report.steps == 3
    stack = report.stacks[0]
    assert (stack.name, stack.status) == ("numpy/cpu:0", "ok")
    assert [b.batch_size for b in stack.batches] == [1, 4, 16]
    for b in stack.batches:
        for p in (b.train, b.infer):
            assert p.ok, p.reason
            assert (p.steps, p.repeats, p.samples_per_s.n) == (3, 3, 3)
            s = p.samples_per_s
            assert 0 < s.low <= s.median <= s.high
            assert p.step_s.median == pytest.approx(b.batch_size / s.median, rel=0.5)
            assert p.memory is not None and p.memory.peak_bytes > 2**20 and p.memory.source == "host RSS"
        lat = b.infer.latency
        assert lat.n == 9 and 0 < lat.p50 <= lat.p95 <= lat.p99
        assert b.train.flop_per_s == pytest.approx(b.train.samples_per_s.median * report.training_flops)
    assert stack.recommended_batch_size in (1, 4, 16)
    peak = stack.peak_flops
    utilisation = stack.batches[0].train.utilisation
    assert (utilisation is None) == (peak is None)  # never invented when the peak is unknown


def test_numpy_report_as_text_and_json(numpy_report):
    text = bench.format_report(numpy_report)
    assert "training" in text and "inference" in text and "numpy/cpu:0: recommended batch" in text
    data = json.loads(json.dumps(numpy_report.to_dict()))
    train = data["stacks"][0]["batches"][0]["train"]
    assert set(train) >= {"samples_per_s", "step_s", "flop_per_s", "utilisation", "memory", "energy"}
    assert train["energy"] == "unavailable" or train["energy"]["joules"] > 0
    assert data["recommend_rule"].startswith("smallest batch size reaching 90%")


def test_numpy_plot(numpy_report, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib")
    from sdk_core.bench.plot import plot_report

    out = tmp_path / "bench.png"
    plot_report(numpy_report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the CLI ------------------------------------------------------------------------------------
def sdk(*args):
    return subprocess.run(
        [sys.executable, "-m", "sdk_core", "bench", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_json():
    pytest.importorskip("sdk_numpy", reason="sdk bench needs the sdk-numpy plugin")
    result = sdk(
        "--framework",
        "numpy",
        "--device",
        "cpu",
        "--batch-sizes",
        "1,4",
        "--steps",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "mlp" and data["batch_sizes"] == [1, 4] and data["repeats"] == 2
    (stack,) = data["stacks"]
    assert stack["stack"] == "numpy/cpu:0" and stack["recommended_batch_size"] in (1, 4)
    for batch in stack["batches"]:
        for phase in (batch["train"], batch["infer"]):
            assert phase["status"] == "ok" and phase["samples_per_s"]["median"] > 0
            for key in ("energy", "utilisation", "memory"):
                assert phase[key] is not None  # a figure, or the word "unavailable"
    assert math.isfinite(stack["batches"][1]["infer"]["latency_s"]["p99"])


def test_cli_table_and_plot(tmp_path):
    pytest.importorskip("sdk_numpy", reason="sdk bench needs the sdk-numpy plugin")
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib")
    out = tmp_path / "bench.png"
    result = sdk(
        "--framework",
        "numpy",
        "--model",
        "lenet5",
        "--batch-sizes",
        "2,4",
        "--steps",
        "1",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--plot",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "training" in result.stdout and "inference" in result.stdout
    assert "numpy/cpu:0: recommended batch" in result.stdout
    assert f"plot saved to {out}" in result.stdout
    assert "numpy/cpu:0 batch 4: train" in result.stderr  # progress, one line per batch size
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_one_line(tmp_path):
    try:
        import matplotlib  # noqa: F401 (only whether it is installed)

        no_dir = "directory does not exist"
    except ImportError:
        no_dir = "--plot needs matplotlib"
    for args, fragment in (
        (("--batch-sizes", "0,8"), "must be positive ints"),
        (("--repeats", "0"), "'repeats' must be an int >= 1"),
        (("--plot", str(tmp_path / "no" / "p.png")), no_dir),
        (("--framework", "caffe"), "unknown framework 'caffe'"),
        (("--device", "quantum:7"), "unknown device 'quantum:7'"),
    ):
        result = sdk(*args)
        assert result.returncode == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sdk: error: ") and fragment in lines[0]
