"""Text for people: a dependency-free progress bar on stderr (redrawn in place on a terminal,
one line per epoch otherwise, so logs stay readable) and aligned tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def require_matplotlib() -> None:
    """Raise a one-line :class:`SdkError` when matplotlib (for ``--plot``) is not installed."""
    try:
        import matplotlib  # noqa: F401 (only whether it is installed)
    except ImportError:
        from ..errors import SdkError

        raise SdkError("--plot needs matplotlib: pip install matplotlib") from None


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned columns under ``headers`` with a dashed rule; ``None`` prints as empty."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Progress:
    """A progress bar over ``total`` units of work labelled ``label``."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, width: int = 28) -> None:
        self.total, self.label, self.width = None if total is None else max(total, 1), label, width
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.live and (now - self.last > 0.1 or self.done >= (self.total or self.done + 1)):
            self.last = now
            self._draw("")

    def _draw(self, suffix: str) -> None:
        elapsed = time.perf_counter() - self.start
        if self.total is None:  # an iterable of unknown length: the count only
            text = f"{self.label} {self.done} batches {elapsed:.1f}s{suffix}"
        else:
            filled = int(self.width * self.done / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:.1f}s{suffix}"
        self.stream.write(("\r" + text) if self.live else text + "\n")
        self.stream.flush()

    def close(self, suffix: str = "") -> None:
        self._draw(suffix)
        if self.live:
            self.stream.write("\n")
        self.stream.flush()
