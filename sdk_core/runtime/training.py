"""The training loop behind :meth:`Stack.fit`, with its guards.

- Batches (:class:`ArrayData`): the last partial batch is used; shuffled samples are gathered
  a chunk of batches at a time (one copy, then views), cheaper than a gather per batch, with
  the extra memory bounded to ~64 MiB; a memory-mapped array stays on disk but for the rows a
  chunk needs. Or any iterable of ``(x, y)`` batches (:class:`BatchData`), read afresh each
  epoch, each batch checked.
- Divergence: losses are read back every :data:`CHECK_EVERY` steps (not every step, so an
  accelerator is not synchronised per batch). At the first non-finite loss training stops
  with :class:`TrainingDiverged` naming the epoch and step, and the model is put back to the
  weights it had at the start of that epoch, which were finite: nothing non-finite is kept
  or saved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import attrs
import numpy as np

from ..errors import SdkError
from .checkpoint import Position
from .console import Progress

CHECK_EVERY = 16
"""Steps between two reads of the loss for divergence (a read waits for the device)."""
CHUNK_BYTES = 64 * 2**20


class TrainingDiverged(SdkError):
    """The loss became NaN or infinite; the model holds the last finite weights."""


@attrs.define
class History:
    """Per-epoch figures from :meth:`Stack.fit`."""

    loss: list[float] = attrs.field(factory=list)
    val_loss: list[float] = attrs.field(factory=list)
    val_accuracy: list[float] = attrs.field(factory=list)
    seconds: list[float] = attrs.field(factory=list)
    skipped: int = 0  # fp16 updates skipped because the gradients overflowed (loss scaling)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _finite(weights: dict[str, np.ndarray]) -> bool:
    return all(np.isfinite(w).all() for w in weights.values() if w.dtype.kind == "f")


class Trainable(Protocol):
    """What the loop needs of a :class:`~sdk_core.runtime.stack.Stack`."""

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray], what: str = ...) -> None: ...


class ArrayData:
    """``x`` and ``y`` arrays (memory-mapped ones too: only the rows a batch needs are read):
    batches of ``batch`` samples in order, or shuffled, the last one partial. In a data-parallel
    job of ``size`` processes every rank walks the same global batches and reads only its own
    shard of each (``rank``'s contiguous part); a last batch smaller than ``size`` is dropped.
    Each batch comes with its weight in the epoch's loss: its global size."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool, rank: int = 0, size: int = 1) -> None:
        self.x, self.y, self.batch, self.shuffle, self.rank, self.size = x, y, batch, shuffle, rank, size
        n = len(x)
        whole = n if size == 1 or n % batch == 0 or n % batch >= size else n - n % batch
        self.whole = whole
        self.steps: int | None = math.ceil(whole / batch)
        self.chunk = max(1, CHUNK_BYTES // max(x[:1].nbytes * batch, 1)) * batch

    def epoch(self, rng: np.random.Generator, first: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        n, batch, chunk = len(self.x), self.batch, self.chunk
        order = rng.permutation(n) if self.shuffle else None
        for i in range(first, self.steps or 0):
            s = i * batch
            m = min(batch, self.whole - s)
            if self.size > 1:  # this rank's part of the global batch, read on its own
                lo, hi = s + self.rank * m // self.size, s + (self.rank + 1) * m // self.size
                rows = slice(lo, hi) if order is None else np.sort(order[lo:hi])
                yield self.x[rows], self.y[rows], m
                continue
            if order is None:
                yield self.x[s : s + batch], self.y[s : s + batch], m
                continue
            at = s % chunk
            if at == 0 or i == first:  # gather a chunk of batches at once, then views
                idx = order[s - at : s - at + chunk]
                xc, yc = self.x[idx], self.y[idx]
            yield xc[at : at + batch], yc[at : at + batch], m

    def samples(self) -> int:
        return self.whole


class BatchData:
    """An iterable of ``(x, y)`` numpy batches, iterated afresh each epoch (the data set may be
    larger than RAM); ``check`` validates each batch. A resumed epoch skips the batches done.
    In a data-parallel job of ``size`` processes, rank ``r`` takes the batches ``r``,
    ``r + size``, ...: a disjoint share of each epoch."""

    def __init__(
        self, data: Iterable[Any], check: Callable[[Any], tuple[np.ndarray, np.ndarray]], rank: int = 0, size: int = 1
    ) -> None:
        self.data, self.check, self.steps, self.count, self.epochs = data, check, None, 0, 0
        self.rank, self.size = rank, size

    def epoch(self, rng: np.random.Generator, first: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        batches = iter(self.data)
        if batches is self.data and self.epochs:
            raise SdkError(
                "the training data is an iterator, read up in the first epoch: pass an iterable that "
                "starts afresh on each iter() (a list, or a class with __iter__) to train several epochs"
            )
        self.epochs, self.count = self.epochs + 1, 0
        mine = 0
        for i, item in enumerate(batches):
            if i % self.size != self.rank:
                continue
            xb, yb = self.check(item)
            self.count += len(xb)
            if mine >= first:
                yield xb, yb, len(xb)
            mine += 1

    def samples(self) -> int:
        return self.count


@attrs.define
class Loop:
    """One call of ``fit``: the data, the step and the settings, run epoch by epoch."""

    stack: Trainable
    step: Callable[[np.ndarray, np.ndarray], Any]
    data: ArrayData | BatchData
    forget_step: Callable[[], None]
    seed: int = 0
    checkpoint: Callable[[Position], None] | None = None
    every: int | None = None

    def run(
        self,
        epochs: int,
        evaluate: Callable[[], dict[str, float]] | None,
        progress: bool,
        on_epoch: Callable[[int, History], None] | None,
        resume: Position | None = None,
    ) -> History:
        rng = np.random.default_rng(self.seed)
        history, first_epoch, done = History(), 0, 0
        if resume is not None:
            history, first_epoch, done = History(**resume.history), resume.epoch, resume.step
        previous: dict[str, np.ndarray] | None = None
        for epoch in range(first_epoch, epochs):
            t0 = time.perf_counter()
            steps = self.data.steps
            snapshot = self.stack.get_weights()
            if not _finite(snapshot):  # the last update of the previous epoch diverged
                self._diverged(previous, epoch - 1, steps or 0, steps, "the weights it left are not finite")
            first, losses = 0, []
            if resume is not None and epoch == resume.epoch:  # replay this epoch's shuffle, skip what was done
                rng.bit_generator.state = resume.rng
                first, losses = resume.batch, [resume.loss_sum]
            epoch_rng = dict(rng.bit_generator.state)
            batches = self.data.epoch(rng, first)
            bar = Progress(steps, f"epoch {epoch + 1}/{epochs}") if progress else None
            pending: list[tuple[Any, int]] = []
            read = count = first
            step, checkpoint, every = self.step, self.checkpoint, self.every  # locals: this loop is hot
            for xb, yb, weight in batches:
                pending.append((step(xb, yb), weight))
                done, count = done + 1, count + 1
                save = checkpoint is not None and every is not None and done % every == 0
                if save or len(pending) == CHECK_EVERY:
                    self._read(pending, losses, snapshot, epoch, read, steps)
                    read, pending = count, []
                    if save and checkpoint is not None:
                        checkpoint(Position(epoch, count, done, epoch_rng, sum(losses), history.to_dict()))
                if bar:
                    bar.update()
            self._read(pending, losses, snapshot, epoch, read, steps)
            n = self.data.samples()
            if n == 0:
                raise SdkError(f"the training data gave no batch in epoch {epoch + 1}")
            if checkpoint is not None and every is None:  # at the end of each epoch
                checkpoint(Position(epoch, count, done, epoch_rng, sum(losses), history.to_dict()))
            history.loss.append(sum(losses) / n)
            history.seconds.append(time.perf_counter() - t0)
            suffix = f" loss {history.loss[-1]:.4f}"
            if evaluate is not None:
                result = evaluate()
                history.val_loss.append(result["loss"])
                suffix += f" val_loss {result['loss']:.4f}"
                if "accuracy" in result:
                    history.val_accuracy.append(result["accuracy"])
                    suffix += f" val_acc {result['accuracy']:.4f}"
            if bar:
                bar.close(suffix)
            previous = snapshot
            if on_epoch:
                on_epoch(epoch, history)
        return history

    def _read(
        self,
        pending: list[tuple[Any, int]],
        losses: list[float],
        snapshot: dict[str, np.ndarray],
        epoch: int,
        first: int,
        steps: int | None,
    ) -> None:
        """Read the pending losses back (weighted by batch size); stop at a non-finite one."""
        for j, (value, k) in enumerate(pending):
            loss = float(value)
            if not math.isfinite(loss):
                self._diverged(snapshot, epoch, first + j + 1, steps, f"the loss is {loss}")
            losses.append(loss * k)

    def _diverged(
        self, restore: dict[str, np.ndarray] | None, epoch: int, step: int, steps: int | None, why: str
    ) -> None:
        self.forget_step()  # its optimizer state holds the non-finite values too
        if restore is not None:
            self.stack.set_weights(restore)
            kept = f"the model keeps its weights from the start of epoch {epoch + 1}"
        else:
            kept = "no finite weights to go back to"
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, step {step}{f' of {steps}' if steps else ''}: {why}; {kept} "
            "(lower the learning rate, check the optimizer settings and the data)"
        )
