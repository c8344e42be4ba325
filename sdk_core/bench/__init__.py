"""Hardware evaluation: the Python API behind ``sdk bench``.

``run(spec, stacks=None, batch_sizes=(1, 8, 32, 128), ...) -> BenchReport`` measures training
throughput, inference latency and throughput, peak memory, energy and FLOP utilisation on one
or every usable (framework, device) pair; :mod:`sdk_core.bench.run` documents the protocol,
:mod:`sdk_core.bench.results` the report, :mod:`sdk_core.bench.stats` the statistics and
:mod:`sdk_core.bench.plot` the PNG plot.
"""

from __future__ import annotations

from .._deprecated import module_getattr
from .measure import BATCH_SIZES, is_out_of_memory, run, select_stacks
from .results import (
    RECOMMEND_SHARE,
    UNAVAILABLE,
    BatchResult,
    BenchReport,
    Energy,
    Memory,
    Phase,
    StackResult,
    fastest_inference,
    format_report,
    recommend,
)
from .stats import Latency, Summary, percentile

__all__ = [
    "BATCH_SIZES",
    "RECOMMEND_SHARE",
    "UNAVAILABLE",
    "BatchResult",
    "BenchReport",
    "Energy",
    "Latency",
    "Memory",
    "Phase",
    "StackResult",
    "Summary",
    "fastest_inference",
    "format_report",
    "is_out_of_memory",
    "percentile",
    "recommend",
    "run",
    "select_stacks",
]

# 0.1's add_command and cmd_bench (the `sdk bench` command) now live in sdk_core.cli.bench
__getattr__ = module_getattr(__name__)[0]
