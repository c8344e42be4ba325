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

    ``status`` is ``ok``, ``out of memory``, ``skipped`` or ``error`` (with ``reason``).
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
    """One (framework, device) pair: its batch sizes and the recommended one."""

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

    @property
    def name(self) -> str:
        return f"{self.framework}/{self.device}"

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["peak_flops"] = _or_unavailable(self.peak_flops)
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


def format_report(report: BenchReport) -> str:
    """Two tables (training, inference), then one recommendation per stack and the notes."""
    train_rows, infer_rows, lines, notes = [], [], [], []
    noisy: list[str] = []
    for s in report.stacks:
        if s.status != "ok":
            lines.append(f"{s.name}: {s.status}: {s.reason}")
            continue
        for b in s.batches:
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
        out += ["inference", table(infer_rows, INFER_COLUMNS), ""]
    out += lines
    if noisy:
        out.append(
            f"noisy: repeats differ by more than {NOISY:.0%} on {', '.join(noisy)}; "
            "an idle machine or more --repeats gives steadier figures"
        )
    if notes:
        out += ["", "n/a = unavailable:"] + [f"  {n}" for n in notes]
    return "\n".join(out)
