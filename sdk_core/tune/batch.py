"""The batch-size finder: the largest batch that fits, then the fastest one within it.

The search starts from ``sdk estimate``'s prediction (:func:`~sdk_core.model.estimate.largest_batch`
for the memory available) and confirms it by trial: a training step at that size either runs
within the limit or fails. On an accelerator the limit is its memory and "fails" is the
portable :class:`~sdk_core.errors.DeviceOutOfMemory`; on the cpu, whose host does not run out
of memory cleanly, the limit is a ``memory_budget`` (by default :data:`BUDGET_SHARE` of the memory
the cpu plugin reports available) and a batch fits when the process's peak memory during its
steps (read through the device plugin) stays within it. From
the estimate the size doubles until a trial fails (or halves until one fits), then a binary
search narrows the gap. After an out-of-memory trial the memory is released and a step at the
size found is run again, to show the process is healthy. Then every power of two up to that
size is timed and the one with the most samples per second wins.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError, is_out_of_memory
from ..model.data import make_batch
from ..model.estimate import largest_batch
from ..model.files import size_text
from ..model.optim import Optimizer
from ..runtime.stack import Stack
from .lr import built

MAX_TRIALS = 16
BUDGET_SHARE = 0.5
"""The cpu's default memory budget: this share of the memory available (``--memory-budget`` overrides it)."""


@attrs.frozen
class BatchTrial:
    """One trial: whether ``batch_size`` fit, the peak memory seen and why it did not fit."""

    batch_size: int
    fits: bool
    peak_bytes: int | None
    reason: str = ""


@attrs.frozen
class BatchSizeResult:
    """The largest batch that fits, the estimate it started from, and the fastest batch."""

    limit_bytes: int
    limit: str
    estimated: int
    largest: int
    best: int
    best_samples_per_s: float
    samples_per_s: dict[int, float]
    trials: tuple[BatchTrial, ...]
    healthy: bool

    @property
    def estimate_error(self) -> float | None:
        """How far the estimate was from what was found: ``estimated / largest - 1``."""
        return None if not self.largest else self.estimated / self.largest - 1

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["samples_per_s"] = {str(k): v for k, v in self.samples_per_s.items()}
        data["estimate_error"] = self.estimate_error
        return data


class _Trials:
    def __init__(self, stack: Stack, loss: str, optimizer: Optimizer, budget: int | None, seed: int) -> None:
        self.stack, self.loss, self.budget, self.seed = stack, loss, budget, seed
        self.step = stack.train_step(loss, optimizer)
        self.manager, self.device = stack.manager, stack.device
        self.done: list[BatchTrial] = []

    def run(self, batch: int, steps: int = 2) -> None:
        """``steps`` training steps at ``batch`` (the second holds the optimizer state and the
        gradients of the first)."""
        x, y = make_batch(built(self.stack), self.loss, batch, seed=self.seed)
        for _ in range(steps):
            float(self.step(x, y))

    def __call__(self, batch: int) -> bool:
        peak, reason = None, ""
        try:
            self.manager.reset_peak_memory(self.device)
            self.run(batch)
            reading = self.manager.read_memory(self.device)
            peak = None if reading is None else (reading.peak if reading.peak is not None else reading.used)
            fits = self.budget is None or (peak is not None and peak <= self.budget)
            reason = "" if fits else "over the memory budget"
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            fits, reason = False, "out of memory"
        finally:
            gc.collect()  # what a failed trial held goes back to the allocator
        self.done.append(BatchTrial(batch, fits, peak, reason))
        return fits

    def healthy(self, batch: int) -> bool:
        """Whether a step at ``batch`` still runs after the trials (an out-of-memory trial
        must not have left the process broken)."""
        try:
            self.run(batch, steps=1)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return False
        finally:
            gc.collect()
        return True


def _search(trial: _Trials, start: int, most: int) -> int:
    """The largest size ``trial`` accepts: double (or halve) from ``start``, then bisect."""
    lo, hi = 0, most + 1  # lo fits (0: none yet); hi does not (most + 1: none has failed)
    size = max(1, min(start, most))
    if trial(size):
        lo = size
        while hi > most and lo < most:
            size = min(lo * 2, most)
            if trial(size):
                lo = size
            else:
                hi = size
    else:
        hi = size
        while lo == 0 and hi > 1:
            size = hi // 2
            if trial(size):
                lo = size
            else:
                hi = size
    while hi - lo > max(1, lo // 32) and len(trial.done) < MAX_TRIALS:
        mid = (lo + hi) // 2
        if trial(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _samples_per_s(stack: Stack, step: Callable[..., Any], loss: str, batch: int, seed: int) -> float:
    x, y = make_batch(built(stack), loss, batch, seed=seed)
    float(step(x, y))
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        float(step(x, y))
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def find_batch_size(
    stack: Stack,
    memory_budget: int | None = None,
    loss: str = "cross_entropy",
    optimizer: Optimizer | None = None,
    max_batch: int = 2**16,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BatchSizeResult:
    """Find the largest batch that fits on the stack's device (within ``memory_budget`` bytes of
    process memory on the cpu: by default :data:`BUDGET_SHARE` of the memory available, which
    ``progress`` is told), then the fastest batch up to it. The stack's weights are put back
    afterwards."""
    spec = built(stack)
    optimizer = optimizer or Optimizer()
    device = stack.device
    if spec.param_count() == 0:
        raise SdkError("the model has no trainable parameters: there is nothing to train at any batch size")
    memory_budget, share = _budget(stack, memory_budget, progress)
    saved = stack.get_weights()
    trials = _Trials(stack, loss, optimizer, memory_budget, seed)
    reading = stack.manager.read_memory(device)
    used = reading.used if reading is not None else 0
    if memory_budget is not None:
        limit, what = memory_budget, "memory budget"
        if share:
            what = f"memory budget of {size_text(memory_budget)}, {share}"
        available = memory_budget - used  # what this process already holds is not the model's to use
    else:
        limit, what = int(device.memory_total or 0), "device memory"
        available = int(device.memory_free or device.memory_total or 0)
    estimated = largest_batch(spec, max(available, 0), optimizer=_slots_name(optimizer))
    if progress:
        progress(f"batch size: the estimate says {estimated:,} fit in {available / 2**20:,.0f} MiB; trying")
    try:
        largest = _search(trials, max(estimated, 1), max_batch)
        if largest == 0:
            raise SdkError(f"not even a batch of 1 fits in the {what} ({limit / 2**20:,.0f} MiB)")
        healthy = trials.healthy(largest)
        rates = {}
        size = 1
        while size <= largest:
            rates[size] = _samples_per_s(stack, trials.step, loss, size, seed)
            if progress:
                progress(f"batch size {size:,}: {rates[size]:,.0f} samples/s")
            size = size * 2 if size * 2 <= largest or size == largest else largest
        best = max(rates, key=lambda b: rates[b])
    finally:
        stack.set_weights(saved)
    return BatchSizeResult(limit, what, estimated, largest, best, rates[best], rates, tuple(trials.done), healthy)


def _slots_name(optimizer: Optimizer) -> str:
    """The estimate's name for the optimizer's state: SGD with momentum keeps one slot."""
    if optimizer.name == "sgd":
        return "momentum" if optimizer.momentum else "sgd"
    return optimizer.name


class _DecodeTrials(_Trials):
    """Trials of generation: prefill ``prompt`` tokens and decode ``new`` more for a batch."""

    def __init__(self, stack: Stack, prompt: int, new: int, budget: int | None, seed: int) -> None:
        self.stack, self.budget, self.seed, self.prompt, self.new = stack, budget, seed, prompt, new
        self.manager, self.device = stack.manager, stack.device
        self.done: list[BatchTrial] = []

    def run(self, batch: int, steps: int = 1) -> None:
        """Generate for ``batch`` random prompts (``steps``: one generation is the whole trial)."""
        vocab = built(self.stack).output_shape[-1]
        prompts = np.random.default_rng(self.seed).integers(0, vocab, (batch, self.prompt))
        self.stack.generate(prompts, self.new, temperature=0)


def find_decode_batch(
    stack: Stack,
    prompt_tokens: int,
    new_tokens: int,
    memory_budget: int | None = None,
    max_batch: int = 2**14,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BatchSizeResult:
    """The largest batch of ``prompt_tokens``-token prompts that generates ``new_tokens`` more
    with the key/value cache on the stack's device (within ``memory_budget`` bytes of process
    memory on the cpu: by default :data:`BUDGET_SHARE` of the memory available), starting from
    :func:`~sdk_core.model.estimate.generation_memory`'s estimate, then the batch with the
    most tokens per second up to it (``samples_per_s`` counts generated tokens)."""
    from ..model.estimate import generation_memory

    spec = built(stack)
    device = stack.device
    memory_budget, share = _budget(stack, memory_budget, progress)
    generation_memory(spec, prompt_tokens, new_tokens, 1)  # a context too long fails here, in one line
    trials = _DecodeTrials(stack, prompt_tokens, new_tokens, memory_budget, seed)
    reading = stack.manager.read_memory(device)
    used = reading.used if reading is not None else 0
    limit = memory_budget if memory_budget is not None else int(device.memory_total or 0)
    what = f"memory budget of {size_text(limit)}{', ' + share if share else ''}" if memory_budget else "device memory"
    available = max((memory_budget - used) if memory_budget is not None else int(device.memory_free or limit), 0)
    fits = lambda b: generation_memory(spec, prompt_tokens, new_tokens, b)["total"] <= available
    estimated, step = 0, 1
    while step and estimated < max_batch:  # grow by doubling steps, then halve them back to the edge
        if estimated + step <= max_batch and fits(estimated + step):
            estimated += step
            step *= 2
        else:
            step //= 2
    if progress:
        progress(f"decode batch: the estimate says {estimated:,} fit in {available / 2**20:,.0f} MiB; trying")
    largest = _search(trials, max(estimated, 1), max_batch)
    if largest == 0:
        raise SdkError(f"not even one sequence generates in the {what} ({limit / 2**20:,.0f} MiB)")
    healthy = trials.healthy(largest)
    rates: dict[int, float] = {}
    size = 1
    while size <= largest:
        t0 = time.perf_counter()
        trials.run(size)
        rates[size] = size * new_tokens / (time.perf_counter() - t0)
        if progress:
            progress(f"decode batch {size:,}: {rates[size]:,.0f} tokens/s")
        size = size * 2 if size * 2 <= largest or size == largest else largest
    best = max(rates, key=lambda b: rates[b])
    return BatchSizeResult(limit, what, estimated, largest, best, rates[best], rates, tuple(trials.done), healthy)


def _budget(stack: Stack, memory_budget: int | None, progress: Callable[[str], None] | None) -> tuple[int | None, str]:
    """The memory budget (the cpu's default share of what is available) and how it was set."""
    device = stack.device
    if memory_budget is not None and (isinstance(memory_budget, bool) or memory_budget <= 0):
        raise SdkError(f"'memory_budget' must be a positive number of bytes (got {memory_budget!r})")
    share = ""
    if device.kind == "cpu" and memory_budget is None:
        if not device.memory_free:
            raise SdkError(f"{device.id} reports no available memory: give a memory budget (--memory-budget 4GiB)")
        memory_budget = int(device.memory_free * BUDGET_SHARE)
        share = f"{BUDGET_SHARE:.0%} of the {size_text(device.memory_free)} available".replace("%", " %")
        if progress:
            progress(f"memory budget: {share} = {size_text(memory_budget)} (--memory-budget to change)")
    if memory_budget is None and device.memory_total is None:
        raise SdkError(f"{device.id} reports no memory size: give a memory budget")
    if memory_budget is not None and stack.manager.read_memory(device) is None:
        raise SdkError(f"no plugin reads memory on {device.id}: a memory budget cannot be checked there")
    return memory_budget, share
