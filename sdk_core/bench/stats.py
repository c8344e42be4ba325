"""Statistics for ``sdk bench``: the median and spread of repeats, latency percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import attrs


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between the closest ranks
    (numpy's default method): rank ``q/100 * (n - 1)`` in the sorted values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"'q' must lie in [0, 100] (got {q})")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@attrs.frozen
class Summary:
    """The repeats of one figure: median, lowest, highest, and the spread
    ``(high - low) / median`` (0.05 reads "within 5 %")."""

    median: float
    low: float
    high: float
    n: int

    @property
    def spread(self) -> float:
        return (self.high - self.low) / self.median if self.median else 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("summary of no values")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "spread": self.spread}


@attrs.frozen
class Latency:
    """Per-call times in seconds: percentiles 50, 95 and 99, and the mean, over ``n`` calls."""

    p50: float
    p95: float
    p99: float
    mean: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        return cls(
            percentile(seconds, 50),
            percentile(seconds, 95),
            percentile(seconds, 99),
            statistics.fmean(seconds),
            len(seconds),
        )

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
