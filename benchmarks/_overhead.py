"""Shared driver for the overhead benchmarks: ``Stack.fit`` against a hand-written native
training loop of the same model, initial weights, data, batch order and optimizer, in one
process. Each round is one interleaved pair: one epoch of each, alternating which goes first,
and gives one stack/native ratio, so a drift in the machine's speed hits both halves of a pair
alike. The report is the median of the pair ratios with their lowest and highest; the first
round (compilation, warm-up) is not counted.

A native loop is a callable ``make_native(spec, weights, optimizer, **options) -> epoch``
(``optimizer`` is the core ``Optimizer`` the native loop mirrors with its framework's own
optimizer; ``options`` the benchmark's own on/off flags, see :func:`main`) where
``epoch(x, y, order, batch) -> list of per-batch losses`` trains one epoch over the batches
``order[s:s + batch]`` and returns the losses as floats.

Both loops start from the same weights and each trains on from where its last epoch left it,
so the loss columns show they do the same work: equal, or apart by rounding only where the
plugin uses a kernel the native loop does not (torch's fused optimizers), and then growing
with the epochs as two trainings do that round differently.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from sdk_core import Optimizer, Stack, digits, zoo

Epoch = Callable[[np.ndarray, np.ndarray, np.ndarray, int], list]


def _data(spec):
    if len(spec.input_shape) == 3:
        return digits(image_size=spec.input_shape[1])[:2]
    return digits(image_size=None)[:2]


def compare(
    framework: str,
    make_native: Callable[..., Epoch],
    model: str,
    rounds: int,
    batch: int,
    optimizer: Optimizer,
    options: dict[str, bool] | None = None,
) -> dict:
    spec = zoo.get(model)
    x, y = _data(spec)
    n = len(x)
    stack = Stack(framework).build(spec, seed=0)
    native_epoch = make_native(spec, stack.get_weights(), optimizer, **(options or {}))
    t_stack, t_native, ratios, diffs = [], [], [], []
    for r in range(rounds):
        order = np.random.default_rng(r).permutation(n)

        def run_stack():
            t = time.perf_counter()
            history = stack.fit(x, y, epochs=1, batch_size=batch, optimizer=optimizer, seed=r)
            return time.perf_counter() - t, history.loss[0]

        def run_native():
            t = time.perf_counter()
            losses = native_epoch(x, y, order, batch)
            return time.perf_counter() - t, losses

        if r % 2:  # alternate who goes first
            (dn, losses), (ds, stack_loss) = run_native(), run_stack()
        else:
            (ds, stack_loss), (dn, losses) = run_stack(), run_native()
        sizes = [len(order[s : s + batch]) for s in range(0, n, batch)]
        native_loss = sum(l * k for l, k in zip(losses, sizes, strict=True)) / n
        diffs.append(abs(stack_loss - native_loss))
        if r:
            t_stack.append(ds)
            t_native.append(dn)
            ratios.append(ds / dn)
    steps = len(range(0, n, batch))
    return {
        "model": model,
        "steps": steps,
        "stack_ms": 1e3 * statistics.median(t_stack) / steps,
        "native_ms": 1e3 * statistics.median(t_native) / steps,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "max_loss_diff": max(diffs),
    }


def main(
    framework: str,
    make_native: Callable[..., Epoch],
    optimizer: Optimizer | None = None,
    flags: dict[str, str] | None = None,
) -> None:
    """Run the comparison from the command line; ``flags`` (``--name``: help) are on/off
    options of this benchmark, given to ``make_native`` as keyword arguments."""
    optimizer = optimizer or Optimizer("adam")
    parser = argparse.ArgumentParser(description=f"Stack.fit vs a native {framework} loop")
    parser.add_argument("--models", default="mlp,lenet5")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--batch", type=int, default=32)
    names = [parser.add_argument(flag, action="store_true", help=text).dest for flag, text in (flags or {}).items()]
    args = parser.parse_args()
    options = {name: getattr(args, name) for name in names}
    print(
        f"{framework}: Stack.fit vs hand-written loop, digits, batch {args.batch}, {optimizer.name} "
        f"lr {optimizer.lr} momentum {optimizer.momentum}, "
        f"{args.rounds - 1} interleaved epoch pairs{''.join(f', {k}' for k, v in options.items() if v)} "
        f"(goal: median pair ratio <= 1.02; max loss diff: the two trainings' epoch losses)"
    )
    print(
        f"{'model':8} {'steps':>5} {'stack ms/step':>14} {'native ms/step':>15} {'ratio':>6} "
        f"{'min-max':>13} {'max loss diff':>14}"
    )
    for model in args.models.split(","):
        r = compare(framework, make_native, model, args.rounds, args.batch, optimizer, options)
        print(
            f"{r['model']:8} {r['steps']:5d} {r['stack_ms']:14.3f} {r['native_ms']:15.3f} "
            f"{r['ratio']:6.3f} {r['ratio_min']:6.3f}-{r['ratio_max']:<6.3f} {r['max_loss_diff']:14.2e}"
        )
