"""PNG plot of a :class:`~sdk_core.bench.BenchReport` with matplotlib (an optional dependency,
imported on use; drawn on the Agg canvas, so the global backend is left alone).

Left: training throughput against batch size, one line per stack, whiskers from the lowest to
the highest repeat, a star on the recommended batch size and a cross where memory ran out.
Right: inference latency p50 against batch size, with a band from p50 to p95.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from ..model.files import atomic_write
from ..runtime.console import require_matplotlib

if TYPE_CHECKING:
    from .results import BenchReport


def _label(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


def plot_report(report: BenchReport, path: str) -> None:
    """Write the two-panel plot of ``report`` to ``path`` (PNG)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    fig = Figure(figsize=(11, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    train_ax, infer_ax = fig.subplots(1, 2)
    for n, stack in enumerate(s for s in report.stacks if s.status == "ok"):
        color = f"C{n % 10}"
        ok = [b for b in stack.batches if b.train.ok and b.train.samples_per_s]
        if ok:
            xs = [b.batch_size for b in ok]
            rates = [b.train.samples_per_s for b in ok]
            med = [r.median for r in rates]  # type: ignore[union-attr]  # only measured phases are plotted
            low = [r.median - r.low for r in rates]  # type: ignore[union-attr]  # only measured phases are plotted
            high = [r.high - r.median for r in rates]  # type: ignore[union-attr]  # only measured phases are plotted
            train_ax.errorbar(xs, med, yerr=[low, high], color=color, marker="o", capsize=3, label=stack.name)
            if stack.recommended_batch_size in xs:
                i = xs.index(stack.recommended_batch_size)
                train_ax.plot(
                    xs[i], med[i], marker="*", markersize=16, color=color, markeredgecolor="black", linestyle="none"
                )
            for b in stack.batches:
                if b.train.status == "out of memory":
                    train_ax.plot(b.batch_size, med[-1], marker="x", markersize=10, color=color, linestyle="none")
                    train_ax.annotate(
                        "out of memory",
                        (b.batch_size, med[-1]),
                        fontsize=8,
                        textcoords="offset points",
                        xytext=(6, -4),
                        color=color,
                    )
        done = [b for b in stack.batches if b.infer.ok and b.infer.latency]
        if done:
            xs = [b.batch_size for b in done]
            p50 = [b.infer.latency.p50 * 1e3 for b in done]  # type: ignore[union-attr]  # only measured phases are plotted
            p95 = [b.infer.latency.p95 * 1e3 for b in done]  # type: ignore[union-attr]  # only measured phases are plotted
            infer_ax.plot(xs, p50, color=color, marker="o", label=stack.name)
            infer_ax.fill_between(xs, p50, p95, color=color, alpha=0.15, linewidth=0)
    ticks = list(report.batch_sizes)
    for ax, title, ylabel in (
        (train_ax, "training throughput (median, min-max; * recommended)", "samples / s"),
        (infer_ax, "inference latency p50 (band to p95)", "ms per call"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(_label))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    legend: dict[str, Any] = {}  # label -> matplotlib artist
    for ax in (train_ax, infer_ax):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="outside lower center",
            ncols=min(len(legend), 5),
            fontsize=9,
            frameon=False,
        )
    fig.suptitle(f"sdk bench: {report.model} ({report.parameters:,} parameters, {report.dtype})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue())
