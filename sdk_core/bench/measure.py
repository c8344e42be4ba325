"""Measuring for ``sdk bench``: :func:`run` (re-exported as ``sdk_core.bench.run``).

For each (framework, device) pair and each batch size, :func:`run` measures

- training: samples per second (median of the repeats, with lowest, highest and spread);
- inference: latency percentiles p50 / p95 / p99 per call and samples per second;
- achieved FLOP/s (:mod:`sdk_core.model.estimate`) and its share of the device's peak, when the
  device plugin reports a peak for the dtype;
- peak memory, read through ``sdk_read_memory`` after ``sdk_reset_peak_memory`` opened a new
  window for the phase (host RSS high-water mark for the cpu; where a plugin cannot reset, the
  peak covers the whole process so far, which is why batch sizes run smallest first);
- energy and average power over the timed region, from ``sdk_read_power`` (NVML, RAPL).

A figure no plugin can read is reported as unavailable, never estimated.

Protocol: the step (or predict function) is made once; ``warmup`` calls (compilation, caches)
are not timed; then ``repeats`` timed repeats of ``steps`` calls each (``steps=None``: enough
calls for ``min_time`` seconds per repeat, judged from one call after the warm-up).
Devices are synchronised through the plugin contract: a repeat ends with ``float()`` on the
last step's loss, which depends on every update before it, and ``predict`` returns a numpy
array, so each predict call is complete when it returns. Batches are numpy arrays made once
per batch size and handed to the step as ``Stack.fit`` does, so host-to-device copies count.

A batch size that runs out of memory (``MemoryError``, a framework's out-of-memory error) is
reported as "out of memory" and larger ones as "skipped". The recommended batch size is the
smallest one whose median training throughput reaches 90 % of the best measured one
(``sdk_core.bench.results.RECOMMEND_SHARE``): beyond it a larger batch buys little speed for more memory.

Energy comes from the difference of two cumulative readings (``energy_j``) taken right before
and after the timed repeats, or, for a sensor that gives only instantaneous power, from the mean
of the readings taken between repeats times the elapsed time (the source says which). RAPL
counts the whole CPU package, other processes included.
"""

from __future__ import annotations

import gc
import math
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._deprecated import module_getattr
from ..errors import NotAvailableError, SdkError, is_out_of_memory
from ..model.data import make_batch
from ..model.estimate import forward_flops, training_flops
from ..model.optim import Optimizer, check_loss
from ..model.spec import ModelSpec
from ..model.weights import NONFINITE_HINT, check_finite
from ..plugins.manager import PluginManager, get_manager
from ..plugins.records import DTYPES, DeviceInfo, FrameworkInfo, MemoryReading
from ..runtime.select import usable_stacks
from ..runtime.stack import Stack
from ..version import __version__
from .results import BatchResult, BenchReport, Energy, Memory, Phase, StackResult, recommend
from .stats import Latency, Summary

BATCH_SIZES = (1, 8, 32, 128)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- measuring ----------------------------------------------------------------------------------
class _Meter:
    """Memory and power readings around a timed region (between repeats, never inside one)."""

    def __init__(self, manager: PluginManager, device: DeviceInfo) -> None:
        self.manager, self.device = manager, device

    def start(self) -> None:
        self.used: list[int] = []
        self.memory: MemoryReading | None = None
        self.watts: list[float] = []
        self.manager.reset_peak_memory(self.device)  # peaks of earlier phases and stacks do not count
        self.power0 = self.manager.read_power(self.device)
        self.t0 = time.perf_counter()
        self.sample()

    def sample(self) -> None:
        memory = self.manager.read_memory(self.device)
        if memory is not None:
            self.memory = memory
            self.used.append(memory.used)
        power = self.manager.read_power(self.device)
        if power is not None and power.power_w is not None:
            self.watts.append(power.power_w)

    def stop(self, samples: int) -> tuple[Memory | None, Energy | None, tuple[str, ...]]:
        """Peak memory, energy over the region (``samples`` processed) and notes on what is
        unavailable."""
        self.sample()
        p0, p1 = self.power0, self.manager.read_power(self.device)
        elapsed = time.perf_counter() - self.t0  # both ends taken right after a power reading
        notes, memory, energy = [], None, None
        if self.memory is None:
            notes.append(f"memory: no plugin reads memory on {self.device.id}")
        else:
            peaks = self.used + ([self.memory.peak] if self.memory.peak is not None else [])
            memory = Memory(max(peaks), self.memory.source or "plugin reading")
        counters = [p.energy_j for p in (p0, p1) if p is not None and p.energy_j is not None]
        if len(counters) == 2:
            joules = counters[1] - counters[0]
            if joules > 0:
                energy = Energy(joules, joules / elapsed, joules / samples, p1.source or "energy counter")  # type: ignore[union-attr]  # set with joules
            else:
                notes.append(f"energy: the energy counter of {self.device.id} did not advance (or wrapped)")
        elif self.watts:
            watts = sum(self.watts) / len(self.watts)
            energy = Energy(
                watts * elapsed, watts, watts * elapsed / samples, f"mean of {len(self.watts)} power readings"
            )
        else:
            notes.append(f"energy: no plugin reads power on {self.device.id}")
        return memory, energy, tuple(notes)


def _calls(fn: Callable[[], Any], warmup: int, steps: int | None, min_time: float, sync: Callable[[Any], Any]) -> int:
    """Run the warm-up and return the number of calls per repeat."""
    for _ in range(warmup):
        sync(fn())
    if steps is not None:
        return steps
    t0 = time.perf_counter()
    sync(fn())
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(1000, math.ceil(min_time / one)))


def _phase(
    kind: str,
    fn: Callable[[], Any],
    sync: Callable[[Any], Any],
    batch: int,
    flops_per_sample: int,
    peak: float | None,
    meter: _Meter,
    warmup: int,
    steps: int | None,
    repeats: int,
    min_time: float,
) -> Phase:
    """Time ``fn`` (one training step or one predict call on a fixed batch)."""
    n = _calls(fn, warmup, steps, min_time, sync)
    per_call: list[float] = []
    repeat_s: list[float] = []
    meter.start()
    for _ in range(repeats):
        if kind == "train":  # one sync per repeat: asynchronous devices keep their queue full
            t0 = time.perf_counter()
            for _ in range(n):
                out = fn()
            sync(out)
            repeat_s.append(time.perf_counter() - t0)
        else:  # predict returns numpy: every call is complete when it returns
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                sync(fn())
                times.append(time.perf_counter() - t0)
            per_call += times
            repeat_s.append(sum(times))
        meter.sample()
    memory, energy, notes = meter.stop(batch * n * repeats)
    throughput = Summary.of([batch * n / s for s in repeat_s])
    flop_per_s = throughput.median * flops_per_sample if flops_per_sample else None
    utilisation = flop_per_s / peak if flop_per_s is not None and peak else None
    if utilisation is None:
        notes += (
            f"utilisation: {meter.device.id} reports no peak FLOP/s for this dtype"
            if not peak
            else "utilisation: the model has no matrix products to count",
        )
    return Phase(
        "ok",
        "",
        n,
        repeats,
        throughput,
        Summary.of([s / n for s in repeat_s]),
        Latency.of(per_call) if per_call else None,
        flop_per_s,
        utilisation,
        memory,
        energy,
        notes,
    )


def _guarded(measure: Callable[..., Phase], *args: Any) -> Phase:
    try:
        return measure(*args)
    except Exception as exc:  # a failed batch size is reported; the sweep goes on
        status = "out of memory" if is_out_of_memory(exc) else "error"
        return Phase(status, _first_line(exc))
    finally:
        gc.collect()


def _bench_stack(
    framework: FrameworkInfo,
    device: DeviceInfo,
    spec: ModelSpec,
    settings: dict[str, Any],
    manager: PluginManager,
    progress: Callable[[str], None],
) -> list[StackResult]:
    """The stack's result, and that of its int8 model where the framework makes one."""
    dtype, loss = settings["dtype"], settings["loss"]
    base: dict[str, Any] = dict(
        framework=framework.name,
        version=framework.version or "",
        device=device.id,
        device_name=device.name,
        peak_flops=device.peak_flops.get(dtype),
    )
    try:
        stack = Stack(framework.name, device.id, manager=manager)
        stack.build(spec, seed=settings["seed"], dtype=dtype)
        if settings["weights"] is not None:
            stack.set_weights(settings["weights"], allow_nonfinite=settings["allow_nonfinite"])
        step = stack.train_step(loss, settings["optimizer"]) if framework.trains else None
    except Exception as exc:
        status = "out of memory" if is_out_of_memory(exc) else "error"
        progress(f"{framework.name}/{device.id}: {status}: {_first_line(exc)}")
        return [StackResult(**base, status=status, reason=_first_line(exc))]
    out = [_result(base, stack, step, spec, settings, manager, progress)]
    if "int8" in framework.capabilities and settings["int8"]:
        try:
            int8 = stack.quantize(settings["calibration"])
        except Exception as exc:
            progress(f"{framework.name}/{device.id} int8: error: {_first_line(exc)}")
            return out + [StackResult(**base, precision="int8", status="error", reason=_first_line(exc))]
        out.append(_result(base, int8, None, spec, settings, manager, progress))
    return out


def _result(
    base: dict[str, Any],
    stack: Stack,
    step: Callable[[np.ndarray, np.ndarray], Any] | None,
    spec: ModelSpec,
    settings: dict[str, Any],
    manager: PluginManager,
    progress: Callable[[str], None],
) -> StackResult:
    evaluation = settings["evaluation"]  # before the training phase changes the weights
    accuracy = None if evaluation is None else stack.evaluate(*evaluation).get("accuracy")
    data = stack.serialized()  # the file the stack runs from, or its canonical float weights
    size = len(data) if data is not None else sum(v.nbytes for v in stack.get_weights().values())
    batches = _measure(stack, step, spec, settings, manager, progress)
    choice, text = recommend(batches) if step is not None else (None, "inference only: no training batch size")
    return StackResult(
        **base,
        precision=stack.precision,
        batches=tuple(batches),
        recommended_batch_size=choice,
        recommendation=text,
        model_bytes=size,
        accuracy=accuracy,
    )


def _measure(
    stack: Stack,
    step: Callable[[np.ndarray, np.ndarray], Any] | None,
    spec: ModelSpec,
    settings: dict[str, Any],
    manager: PluginManager,
    progress: Callable[[str], None],
) -> list[BatchResult]:
    """Every batch size on one stack: training (when ``step`` is given) and inference."""
    dtype, loss, device = settings["dtype"], settings["loss"], stack.device
    peak = device.peak_flops.get(dtype)
    label = f"{stack.framework.name}/{device.id}" + (" int8" if stack.precision == "int8" else "")
    meter = _Meter(manager, device)
    timing = {k: settings[k] for k in ("warmup", "steps", "repeats", "min_time")}
    results: list[BatchResult] = []
    stopped = {"train": 0, "infer": 0}  # the batch size that ran out of memory, per phase

    def batch_data(batch: int, data: list[Any]) -> list[Any]:
        if not data:  # made on first use: a batch size skipped by both phases allocates nothing
            data.extend(make_batch(spec, loss, batch, dtype, settings["seed"]))
        return data

    def train(batch: int, data: list[Any]) -> Phase:
        if step is None:
            return Phase("unsupported", "inference only")
        x, y = batch_data(batch, data)
        return _phase("train", lambda: step(x, y), float, batch, training_flops(spec), peak, meter, **timing)

    def infer(batch: int, data: list[Any]) -> Phase:
        x, _ = batch_data(batch, data)
        return _phase(
            "infer",
            lambda: stack.predict(x, batch_size=batch),
            np.asarray,
            batch,
            forward_flops(spec),
            peak,
            meter,
            **timing,
        )

    for batch in settings["batch_sizes"]:
        data: list[Any] = []
        phases = {}
        for kind, measure in (("train", train), ("infer", infer)):
            if stopped[kind]:
                phases[kind] = Phase("skipped", f"batch {stopped[kind]} ran out of memory")
                continue
            phases[kind] = _guarded(measure, batch, data)
            if phases[kind].status == "out of memory":
                stopped[kind] = batch
        data.clear()
        results.append(BatchResult(batch, phases["train"], phases["infer"]))
        shown = [f"{k} {_short(p)}" for k, p in phases.items() if p.status != "unsupported"]
        progress(f"{label} batch {batch}: " + ", ".join(shown))
    return results


def _short(phase: Phase) -> str:
    if not phase.ok or phase.samples_per_s is None:
        return phase.status
    return f"{phase.samples_per_s.median:,.0f} samples/s"


def check_settings(
    batch_sizes: Iterable[int], warmup: int, repeats: int, steps: int | None, min_time: float, dtype: str = "float32"
) -> tuple[int, ...]:
    """The batch sizes sorted and unique, or a one-line :class:`SdkError` naming the setting."""

    if dtype not in DTYPES:
        raise SdkError(f"'dtype' must be one of {', '.join(DTYPES)} (got {dtype!r})")
    sizes = tuple(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise SdkError(f"'batch_sizes' must be positive ints (got {list(sizes)})")
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SdkError(f"'{name}' must be an int >= {low} (got {value!r})")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise SdkError(f"'steps' must be a positive int or None for auto (got {steps!r})")
    if not min_time > 0:
        raise SdkError(f"'min_time' must be a positive number of seconds (got {min_time!r})")
    return tuple(sorted(set(sizes)))


def select_stacks(
    manager: PluginManager, framework: str = "all", device: str = "all"
) -> list[tuple[FrameworkInfo, DeviceInfo]]:
    """The usable pairs for framework names (comma-separated, or ``all``) and a device id (or
    ``all``)."""

    pairs = usable_stacks(manager)
    if framework != "all":
        names = [n.strip() for n in framework.split(",") if n.strip()]
        for name in names:
            manager.framework(name)  # a clear error for an unknown or missing framework
        pairs = [p for p in pairs if p[0].name in names]
    if device != "all":
        wanted = manager.device(device)
        pairs = [p for p in pairs if p[1].id == wanted.id]
    if not pairs:
        raise NotAvailableError(
            f"no usable stack for framework '{framework}' on device '{device}'"
            if framework != "all" or device != "all"
            else "no usable framework: install a framework plugin (pip install sdk-numpy for the default)"
        )
    return pairs


def run(
    spec: ModelSpec | Mapping[str, Any],
    stacks: Sequence[tuple[str, str]] | None = None,
    batch_sizes: Iterable[int] = BATCH_SIZES,
    *,
    steps: int | None = None,
    warmup: int = 3,
    repeats: int = 5,
    min_time: float = 0.1,
    loss: str = "cross_entropy",
    optimizer: Optimizer | None = None,
    dtype: str = "float32",
    seed: int = 0,
    manager: PluginManager | None = None,
    progress: Callable[[str], None] | None = None,
    weights: Mapping[str, np.ndarray] | None = None,
    allow_nonfinite: bool = False,
    evaluation: tuple[Any, Any] | None = None,
    calibration: Any = None,
    int8: bool = True,
) -> BenchReport:
    """Benchmark ``spec`` on ``stacks`` (``[(framework, device id), ...]``; ``None``: every
    usable pair) at each batch size; see the module docstring for what and how.

    ``steps`` calls per repeat (``None``: enough for ``min_time`` seconds), ``warmup`` untimed
    calls first, ``repeats`` timed repeats. ``progress`` receives one line per batch size.

    Every stack runs ``weights`` (canonical; default: the spec's initial weights; refused
    when they are stored as integers, or hold NaN or infinity unless ``allow_nonfinite``). With
    ``evaluation`` (inputs, labels) each result holds its accuracy there. A framework with the
    ``int8`` capability (onnxruntime) is measured a second time as an int8 model quantized
    from ``calibration`` inputs (default: 256 random inputs), unless ``int8`` is false:
    accuracy, model size and latency of float32 and int8 side by side. Inference-only
    frameworks report their training phases as ``unsupported``.
    """

    manager = manager or get_manager()
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
    sizes = check_settings(batch_sizes, warmup, repeats, steps, min_time, dtype)
    optimizer = optimizer or Optimizer()
    check_loss(loss)
    if stacks is None:
        pairs = select_stacks(manager)
    else:
        pairs = []
        for fw, dev in stacks:
            info, device = manager.framework(fw), manager.device(dev)
            if device.kind not in info.device_kinds:
                raise NotAvailableError(
                    f"framework '{fw}' cannot run on {device.id} (it drives: {', '.join(info.device_kinds)})"
                )
            pairs.append((info, device))
    if weights is not None:
        spec.check_weights(dict(weights), dtype=dtype)
        if not allow_nonfinite:
            check_finite(weights, "weights", NONFINITE_HINT)
    if calibration is None:
        calibration = make_batch(spec, loss, 256, dtype, seed)[0]
    settings = dict(
        weights=weights,
        allow_nonfinite=allow_nonfinite,
        evaluation=evaluation,
        calibration=calibration,
        int8=int8,
        dtype=dtype,
        loss=loss,
        optimizer=optimizer,
        seed=seed,
        batch_sizes=sizes,
        warmup=warmup,
        steps=steps,
        repeats=repeats,
        min_time=min_time,
    )
    results = tuple(
        result
        for fw, dev in pairs
        for result in _bench_stack(fw, dev, spec, settings, manager, progress or (lambda _: None))
    )
    return BenchReport(
        model=spec.name or "model",
        parameters=spec.param_count(),
        forward_flops=forward_flops(spec),
        training_flops=training_flops(spec),
        dtype=dtype,
        loss=loss,
        optimizer=optimizer.name,
        batch_sizes=sizes,
        warmup=warmup,
        repeats=repeats,
        steps=steps,
        min_time=min_time,
        stacks=results,
        host={
            "sdk_core": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "system": platform.system(),
        },
    )


# OOM_MARKERS lived here in 0.2.0: see sdk_core.errors
__getattr__ = module_getattr(__name__)[0]
