"""NumPy training step time for the MLP and LeNet-5 next to a pure-BLAS matmul of the same
FLOPs, measured in the same run. The ratio (step time / matmul time) is the figure: how far the
plugin's whole step (im2col, element-wise work, optimizer) is from raw BLAS throughput.

    python benchmarks/numpy_step.py [--batch 32] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from sdk_core import Optimizer, Stack, zoo
from sdk_core.model.estimate import training_flops


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_of(flops: float) -> tuple[np.ndarray, np.ndarray]:
    """Square float32 operands whose product costs ``flops`` (2 n^3)."""
    n = max(8, round((flops / 2) ** (1 / 3)))
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'model':8} {'batch':>5} {'step ms':>9} {'GFLOP/s':>8} {'matmul ms':>10} {'GFLOP/s':>8} {'ratio':>6}")
    for spec in (zoo.mlp(), zoo.lenet5()):
        x = rng.standard_normal((args.batch,) + spec.input_shape).astype(np.float32)
        y = rng.integers(0, 10, args.batch)
        step = Stack("numpy").build(spec).train_step("cross_entropy", Optimizer("adam"))
        t_step = median_time(lambda: step(x, y), args.repeats)
        flops = training_flops(spec) * args.batch
        a, b = matmul_of(flops)
        real_flops = 2 * a.shape[0] ** 3
        t_mm = median_time(lambda: a @ b, args.repeats) * flops / real_flops
        print(
            f"{spec.name:8} {args.batch:5d} {t_step * 1e3:9.3f} {flops / t_step / 1e9:8.2f} "
            f"{t_mm * 1e3:10.3f} {flops / t_mm / 1e9:8.2f} {t_step / t_mm:6.2f}"
        )


if __name__ == "__main__":
    main()
