"""Tuning on any framework and device (``sdk tune``): the learning-rate range test, the
batch-size finder, optimizer and model-scale comparisons, and hyperparameter search with
Optuna.

::

    from sdk_core import tune
    found = tune.range_test(stack, x_train, y_train, "adam")      # found.suggested, found.min_over_10
    sizes = tune.find_batch_size(stack, memory_budget=4 * 2**30)  # sizes.largest, sizes.best
    runs = tune.compare_optimizers(make_stack, spec, (x, y, x_val, y_val), epochs=3)
"""

from .batch import BatchSizeResult, BatchTrial, find_batch_size
from .compare import OPTIMIZERS, Run, ScalePoint, compare_optimizers, pareto, scale_spec, scale_sweep, train_run
from .lr import RangeTest, range_test, suggest

__all__ = [
    "OPTIMIZERS",
    "BatchSizeResult",
    "BatchTrial",
    "RangeTest",
    "Run",
    "ScalePoint",
    "compare_optimizers",
    "find_batch_size",
    "pareto",
    "range_test",
    "scale_spec",
    "scale_sweep",
    "suggest",
    "train_run",
]
