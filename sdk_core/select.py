"""Choosing a (framework, device) pair: the policies behind ``Stack.auto()``.

- ``accelerator`` (default): any accelerator before the cpu; among accelerators the highest
  known float32 peak, then the most free memory; then the framework with the highest priority.
- ``memory``: like ``accelerator``, but only devices whose free memory holds the training
  footprint estimated for the spec and batch size (:func:`training_bytes`).
- ``fastest``: build the spec on every usable pair and time a few training steps; the pair
  with the shortest median step wins (a quick measured probe, seconds per pair).

``strict`` fails instead of falling back to the cpu when no accelerator qualifies.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import NotAvailableError, SdkError
from .info import DeviceInfo, FrameworkInfo
from .manager import PluginManager

if TYPE_CHECKING:  # imported where used: `sdk devices` and `sdk plugins` never need them
    from .spec import ModelSpec
    from .stack import Stack

POLICIES = ("accelerator", "memory", "fastest")
Pair = tuple[FrameworkInfo, DeviceInfo]


def usable_stacks(manager: PluginManager) -> list[Pair]:
    """Every (installed framework, probed device) pair the framework can drive, best first
    by the ``accelerator`` policy."""
    pairs = [(fw, dev) for fw in manager.frameworks().values() if fw.installed
             for dev in manager.devices() if dev.kind in fw.device_kinds]
    return sorted(pairs, key=lambda p: (p[1].kind == "cpu", -p[1].peak_flops.get("float32", 0.0),
                                        -(p[1].memory_free or 0), -p[0].priority, p[1].index))


def _median_step(stack: "Stack", spec: "ModelSpec", batch_size: int, steps: int) -> float:
    import statistics

    from .bench_run import make_batch

    x, y = make_batch(spec, "cross_entropy", batch_size)
    step = stack.build(spec).train_step()
    float(step(x, y))  # warm-up: compilation is not part of the figure
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        float(step(x, y))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def choose(manager: PluginManager, policy: str = "accelerator", spec: "ModelSpec | None" = None,
           batch_size: int = 32, device: str | None = None, strict: bool = False) -> Pair:
    """The pair ``Stack.auto()`` uses; see the module docstring for the policies."""
    from . import zoo
    from .estimate import training_bytes
    from .stack import Stack

    if policy not in POLICIES:
        raise SdkError(f"'policy' must be one of {', '.join(POLICIES)} (got {policy!r})")
    pairs = usable_stacks(manager)
    if device is not None:
        wanted = manager.device(device)
        pairs = [p for p in pairs if p[1].id == wanted.id]
        if not pairs:
            raise NotAvailableError(f"no installed framework drives {wanted.id}")
    if not pairs:
        raise NotAvailableError("no usable framework: install a framework plugin "
                                "(pip install sdk-numpy for the default)")
    if strict:
        pairs = [p for p in pairs if p[1].kind != "cpu"]
        if not pairs:
            raise NotAvailableError("strict: no accelerator is usable by an installed framework "
                                    "(only the cpu was found)")
    spec = spec or zoo.mlp()
    if policy == "memory":
        need = training_bytes(spec, batch_size)
        fits = [p for p in pairs if p[1].memory_free is None or p[1].memory_free >= need]
        if not fits:
            raise NotAvailableError(f"no device has {need / 2**20:.0f} MiB free for this model at "
                                    f"batch size {batch_size}")
        pairs = fits
    if policy == "fastest" and len(pairs) > 1:
        timed = [(_median_step(Stack(fw.name, dev.id, manager=manager), spec, batch_size, 5), i)
                 for i, (fw, dev) in enumerate(pairs)]
        return pairs[min(timed)[1]]
    return pairs[0]
