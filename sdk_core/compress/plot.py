"""PNG plot of a compression report: per layer, the weight distribution before and after
(log counts; pruned weights leave the spike at zero), then sparsity and bits per layer."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..model.files import atomic_write
from ..runtime.console import require_matplotlib


def plot_compression(
    report: Mapping[str, Any], before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], path: str
) -> None:
    """Write the report's plot to ``path`` atomically."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in report["layers"] if r["name"].endswith("weight") and r["name"] in after]
    cols = max(2, min(len(rows), 4))
    hist_rows = -(-len(rows) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * (hist_rows + 1)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(hist_rows + 1, cols)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        name = row["name"]
        kept = after[name][after[name] != 0]
        values = [before[name].ravel()] if name in before else []
        edges = np.histogram_bin_edges(np.concatenate(values + [kept.ravel()]), bins=60).tolist()
        if values:
            ax.hist(values[0], bins=edges, color="0.7", label="before", log=True)
        ax.hist(kept, bins=edges, color="C3", alpha=0.8, label="after (nonzero)", log=True)
        ax.set_title(f"{name} ({row['layer']}): {row['nonzeros']:,}/{row['params']:,}, {row['bits']} bits", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    names = [r["name"] for r in report["layers"]]
    half = cols // 2
    sparse_ax = fig.add_subplot(grid[hist_rows, :half])
    sparse_ax.bar(names, [1 - r["nonzeros"] / r["params"] for r in report["layers"]], color="C0")
    sparse_ax.set_ylim(0, 1)
    sparse_ax.set_ylabel("sparsity")
    bits_ax = fig.add_subplot(grid[hist_rows, half:])
    bits_ax.bar(names, [r["bits"] for r in report["layers"]], color="C2")
    bits_ax.set_ylabel("bits per stored value")
    for ax in (sparse_ax, bits_ax):
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.suptitle(
        f"{report['bytes_before']:,} → {report['bytes_after']:,} bytes (×{report['compression_ratio']:.1f}); "
        f"accuracy {report['accuracy_before']:.4f} → {report['accuracy_after']:.4f}",
        fontsize=10,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue())
