"""PNG plot of ``sdk tune``: one panel per part that ran (range test, optimizers against time
and steps, batch sizes, model scales with their Pareto front, search trials)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from ..model.files import atomic_write
from ..runtime.console import require_matplotlib


def plot_tuning(report: Mapping[str, Any], path: str) -> None:
    """Write the plot of a ``sdk tune`` report (its JSON form) to ``path`` atomically."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [p for p in ("lr", "optimizer", "optimizer_steps", "batch_size", "scale", "search") if _has(report, p)]
    if not panels:
        return
    fig = Figure(figsize=(5.0 * len(panels), 3.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        _draw(ax, panel, report)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue())


def _has(report: Mapping[str, Any], panel: str) -> bool:
    return (panel.split("_steps")[0] if panel == "optimizer_steps" else panel) in report


def _draw(ax: Any, panel: str, report: Mapping[str, Any]) -> None:
    if panel == "lr":
        r = report["lr"]
        ax.plot(r["lrs"], r["losses"], color="0.75", lw=0.8, label="loss")
        ax.plot(r["lrs"], r["smoothed"], color="C0", label="smoothed")
        ax.axvline(r["suggested"], color="C3", ls="--", label=f"suggested {r['suggested']:.2g}")
        ax.axvline(r["min_over_10"], color="C2", ls=":", label=f"min/10 {r['min_over_10']:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=f"range test ({r['optimizer']})")
    elif panel in ("optimizer", "optimizer_steps"):
        key = "seconds" if panel == "optimizer" else "steps"
        for run in report["optimizer"]:
            ax.plot(run[key], run["accuracy"], marker="o", label=f"{run['name']} (lr {run['lr']:.2g})")
        ax.set(xlabel="seconds" if key == "seconds" else "updates", ylabel="validation accuracy")
        ax.set_title("optimizers against " + ("time" if key == "seconds" else "steps"))
    elif panel == "batch_size":
        b = report["batch_size"]
        sizes = sorted(int(k) for k in b["samples_per_s"])
        ax.plot(sizes, [b["samples_per_s"][str(s)] for s in sizes], marker="o", label="samples/s")
        ax.axvline(b["largest"], color="C3", ls="--", label=f"largest that fits {b['largest']:,}")
        ax.axvline(b["estimated"], color="C2", ls=":", label=f"estimated {b['estimated']:,}")
        ax.set(xscale="log", xlabel="batch size", ylabel="training samples/s", title="batch size")
    elif panel == "scale":
        points = [p for p in report["scale"]["points"] if p["trained"]]
        front = report["scale"]["pareto"]
        ax.scatter([p["parameters"] for p in points], [p["accuracy"] for p in points], color="C0", label="trained")
        ax.plot([p["parameters"] for p in front], [p["accuracy"] for p in front], color="C3", label="Pareto front")
        for p in points:
            ax.annotate(f"x{p['width']:g}", (p["parameters"], p["accuracy"]), fontsize=7)
        ax.set(xscale="log", xlabel="parameters", ylabel="validation accuracy", title="model scale")
    else:
        trials = [t for t in report["search"]["trials"] if t["value"] is not None]
        ax.scatter([t["number"] for t in trials], [t["value"] for t in trials], color="C0", label="finished")
        ax.set(xlabel="trial", ylabel="validation accuracy", title="search (Optuna TPE)")
    ax.legend(fontsize=7)
