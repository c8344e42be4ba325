"""Results of ``sdk bench``: what one batch size, one stack and one run measured, the
recommended batch size, and the report as text. ``None`` figures are unavailable (no plugin
could read them); ``to_dict`` writes them as the word ``"unavailable"``, never a number."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ..runtime.console import table
from .stats import Latency, Summary

RECOMMEND_SHARE = 0.9
NOISY = 0.5  # a spread above this is flagged in the text report
UNAVAILABLE = "unavailable"


def _or_unavailable(value: Any) -> Any:
    return UNAVAILABLE if value is None else value


# -- results ------------------------------------------------------------------------------------
@attrs.frozen
class Memory:
    """The highest memory reading of a phase in bytes: the plugin's own peak (a high-water
    mark; for host RSS that of the whole process so far) or else the highest use sampled
    between repeats, and where the reading came from."""

    peak_bytes: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Energy:
    """Energy over a timed region: joules, average watts, joules per sample, and the source."""

    joules: float
    watts: float
    joules_per_sample: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Phase:
    """Training or inference at one batch size.

    ``status`` is ``ok``, ``out of memory``, ``skipped``, ``unsupported`` (training on an
    inference-only stack) or ``error`` (with ``reason``).
    ``samples_per_s`` summarises the repeats; ``step_s`` the mean time of one call per repeat;
    ``latency`` (inference only) the percentiles over every call. ``None`` figures are
    unavailable; ``notes`` says why.
    """

    status: str = "ok"
    reason: str = ""
    steps: int = 0
    repeats: int = 0
    samples_per_s: Summary | None = None
    step_s: Summary | None = None
    latency: Latency | None = None
    flop_per_s: float | None = None
    utilisation: float | None = None
    memory: Memory | None = None
    energy: Energy | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if not self.ok:
            return data
        data.update(
            steps=self.steps,
            repeats=self.repeats,
            samples_per_s=self.samples_per_s.to_dict() if self.samples_per_s else None,
            step_s=self.step_s.to_dict() if self.step_s else None,
        )
        if self.latency is not None:
            data["latency_s"] = self.latency.to_dict()
        for name in ("flop_per_s", "utilisation"):
            data[name] = _or_unavailable(getattr(self, name))
        data["memory"] = self.memory.to_dict() if self.memory else UNAVAILABLE
        data["energy"] = self.energy.to_dict() if self.energy else UNAVAILABLE
        data["notes"] = list(self.notes)
        return data


@attrs.frozen
class BatchResult:
    batch_size: int
    train: Phase
    infer: Phase

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "train": self.train.to_dict(), "infer": self.infer.to_dict()}


@attrs.frozen
class StackResult:
    """One (framework, device) pair at one precision (its dtype, or ``int8`` for the int8
    model of a framework that makes one): its batch sizes, the recommended one, the size of
    the model it runs (``model_bytes``: its ONNX file for onnxruntime, else the canonical
    float weights) and its ``accuracy`` on the evaluation data, when given."""

    framework: str
    version: str
    device: str
    device_name: str
    peak_flops: float | None
    status: str = "ok"
    reason: str = ""
    batches: tuple[BatchResult, ...] = ()
    recommended_batch_size: int | None = None
    recommendation: str = ""
    precision: str = "float32"
    model_bytes: int | None = None
    accuracy: float | None = None

    @property
    def name(self) -> str:
        return f"{self.framework}/{self.device}" + (" int8" if self.precision == "int8" else "")

    @property
    def trains(self) -> bool:
        return any(b.train.status != "unsupported" for b in self.batches)

    def p50(self, batch_size: int) -> float | None:
        """Median inference latency at ``batch_size``, if measured."""
        for b in self.batches:
            if b.batch_size == batch_size and b.infer.ok and b.infer.latency is not None:
                return b.infer.latency.p50
        return None

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        for name in ("peak_flops", "model_bytes", "accuracy"):
            data[name] = _or_unavailable(getattr(self, name))
        data["batches"] = [b.to_dict() for b in self.batches]
        return {"stack": self.name, **data}


@attrs.frozen
class BenchReport:
    """Everything :func:`run` measured, with the settings; ``to_dict`` for JSON."""

    model: str
    parameters: int
    forward_flops: int
    training_flops: int
    dtype: str
    loss: str
    optimizer: str
    batch_sizes: tuple[int, ...]
    warmup: int
    repeats: int
    steps: int | None
    min_time: float
    stacks: tuple[StackResult, ...]
    host: dict[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["batch_sizes"] = list(self.batch_sizes)
        data["steps"] = "auto" if self.steps is None else self.steps
        data["stacks"] = [s.to_dict() for s in self.stacks]
        data["fastest_inference"] = fastest_inference(self.stacks, self.batch_sizes)
        data["recommend_rule"] = (
            f"smallest batch size reaching {RECOMMEND_SHARE:.0%} of the best median training throughput"
        )
        return data


def recommend(batches: Sequence[BatchResult]) -> tuple[int | None, str]:
    """The smallest batch size whose median training throughput reaches
    :data:`RECOMMEND_SHARE` of the best measured one, and a sentence saying why."""
    measured = [
        (b.batch_size, b.train.samples_per_s.median)
        for b in batches
        if b.train.ok and b.train.samples_per_s is not None
    ]
    if not measured:
        return None, "no batch size could be trained"
    best_batch, best = max(measured, key=lambda m: m[1])
    choice = min(b for b, v in measured if v >= RECOMMEND_SHARE * best)
    text = (
        f"batch {choice}: the smallest reaching {RECOMMEND_SHARE:.0%} of the best training "
        f"throughput ({best:,.0f} samples/s at batch {best_batch})"
    )
    oom = [b.batch_size for b in batches if b.train.status == "out of memory"]
    if oom:
        text += f"; batch {oom[0]} ran out of memory"
    return choice, text


def fastest_inference(stacks: Sequence[StackResult], batch_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per batch size: the stack with the lowest median inference latency, and the best stack
    that also trains, with how many times faster the first is."""
    out = []
    for batch in batch_sizes:
        timed = [(s.p50(batch), s) for s in stacks if s.status == "ok" and s.p50(batch) is not None]
        if not timed:
            continue
        best_s, best = min(timed, key=lambda t: t[0])  # type: ignore[arg-type,return-value]  # None filtered out
        trainers = [t for t in timed if t[1].trains]
        entry: dict[str, Any] = {"batch_size": batch, "stack": best.name, "p50_s": best_s}
        if trainers:
            train_s, trainer = min(trainers, key=lambda t: t[0])  # type: ignore[arg-type,return-value]  # None filtered out
            entry.update(best_training_stack=trainer.name, its_p50_s=train_s, speedup=train_s / best_s)  # type: ignore[operator]
        out.append(entry)
    return out


# -- text ---------------------------------------------------------------------------------------
def _num(value: float | None, scale: float = 1.0, fmt: str = "{:,.1f}") -> str:
    return "n/a" if value is None else fmt.format(value * scale)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def _bytes(memory: Memory | None) -> str:
    if memory is None:
        return "n/a"
    unit = next(u for u in (3, 2, 1, 0) if memory.peak_bytes >= 1024**u or u == 0)
    digits = 0 if unit < 2 else 1
    return f"{memory.peak_bytes / 1024**unit:,.{digits}f} {('B', 'KiB', 'MiB', 'GiB')[unit]}"


def _flop(value: float) -> str:
    unit = next(u for u in (4, 3, 2, 1, 0) if value >= 1000**u or u == 0)
    return f"{value / 1000**unit:,.3g} {('', 'k', 'M', 'G', 'T')[unit]}FLOP"


def _ms(value: float | None) -> str:
    return _num(value, 1e3, "{:,.3f}")


def _per_sample(energy: Energy | None) -> str:
    return _num(energy.joules_per_sample if energy else None, 1e3, "{:,.3f}")


TRAIN_COLUMNS = ("stack", "batch", "samples/s", "spread", "step ms", "GFLOP/s", "util", "peak memory", "mJ/sample", "W")
INFER_COLUMNS = (
    "stack",
    "batch",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "samples/s",
    "spread",
    "util",
    "peak memory",
    "mJ/sample",
)


def _row(name: str, batch: int, phase: Phase, width: int) -> list[Any]:
    if not phase.ok or phase.samples_per_s is None:
        status = phase.status + (f" ({phase.reason})" if phase.status == "error" else "")
        return [name, batch, status] + [""] * (width - 3)
    rate = [_rate(phase.samples_per_s.median), f"{phase.samples_per_s.spread:.0%}"]
    util = _num(phase.utilisation, 100, "{:.1f}%")
    if phase.latency is None:  # training
        return [
            name,
            batch,
            *rate,
            _ms(phase.step_s.median if phase.step_s else None),
            _num(phase.flop_per_s, 1e-9, "{:,.2f}"),
            util,
            _bytes(phase.memory),
            _per_sample(phase.energy),
            _num(phase.energy.watts if phase.energy else None),
        ]
    lat = phase.latency
    return [
        name,
        batch,
        _ms(lat.p50),
        _ms(lat.p95),
        _ms(lat.p99),
        *rate,
        util,
        _bytes(phase.memory),
        _per_sample(phase.energy),
    ]


def _served_table(report: BenchReport) -> str:
    """Per stack: precision, model size, accuracy and median latency at each batch size."""
    rows = [
        [
            s.name,
            s.precision,
            "n/a" if s.model_bytes is None else _bytes(Memory(s.model_bytes, "")),
            "n/a" if s.accuracy is None else f"{s.accuracy:.4f}",
            *(_ms(s.p50(b)) for b in report.batch_sizes),
        ]
        for s in report.stacks
        if s.status == "ok"
    ]
    return table(rows, ("stack", "precision", "model", "accuracy", *(f"p50 ms @{b}" for b in report.batch_sizes)))


def format_report(report: BenchReport) -> str:
    """Two tables (training, inference), then one recommendation per stack and the notes."""
    train_rows, infer_rows, lines, notes = [], [], [], []
    noisy: list[str] = []
    for s in report.stacks:
        if s.status != "ok":
            lines.append(f"{s.name}: {s.status}: {s.reason}")
            continue
        for b in s.batches:
            if b.train.status != "unsupported":
                train_rows.append(_row(s.name, b.batch_size, b.train, len(TRAIN_COLUMNS)))
            infer_rows.append(_row(s.name, b.batch_size, b.infer, len(INFER_COLUMNS)))
            for phase in (b.train, b.infer):
                notes += [n for n in phase.notes if n not in notes]
                spread = phase.samples_per_s.spread if phase.samples_per_s else 0.0
                if spread > NOISY and s.name not in noisy:
                    noisy.append(s.name)
        lines.append(f"{s.name}: recommended {s.recommendation}")
    steps = "auto" if report.steps is None else report.steps
    out = [
        f"{report.model}: {report.parameters:,} parameters, {_flop(report.training_flops)} "
        f"per training sample; {report.dtype}, {report.loss}, {report.optimizer}; "
        f"{report.warmup} warm-up, {report.repeats} repeats of {steps} steps",
        "",
    ]
    if train_rows:
        out += ["training", table(train_rows, TRAIN_COLUMNS), ""]
    if infer_rows:
        out += ["inference", table(infer_rows, INFER_COLUMNS), ""]
        out += ["models served", _served_table(report), ""]
        for f in fastest_inference(report.stacks, report.batch_sizes):
            text = f"fastest inference at batch {f['batch_size']}: {f['stack']} ({_ms(f['p50_s'])} ms)"
            if "speedup" in f and f["best_training_stack"] != f["stack"]:
                text += f", {f['speedup']:.1f}x faster than {f['best_training_stack']}, the best that trains"
            out.append(text)
        out.append("")
    out += lines
    if noisy:
        out.append(
            f"noisy: repeats differ by more than {NOISY:.0%} on {', '.join(noisy)}; "
            "an idle machine or more --repeats gives steadier figures"
        )
    if notes:
        out += ["", "n/a = unavailable:"] + [f"  {n}" for n in notes]
    return "\n".join(out)
