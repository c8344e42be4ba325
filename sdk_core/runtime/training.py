"""The training loop behind :meth:`Stack.fit`, with its guards.

- Batches: the last partial batch is used; shuffled samples are gathered a chunk of batches at
  a time (one copy, then views), cheaper than a gather per batch, with the extra memory
  bounded to ~64 MiB.
- Divergence: losses are read back every :data:`CHECK_EVERY` steps (not every step, so an
  accelerator is not synchronised per batch). At the first non-finite loss training stops
  with :class:`TrainingDiverged` naming the epoch and step, and the model is put back to the
  weights it had at the start of that epoch, which were finite: nothing non-finite is kept
  or saved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import numpy as np

from ..errors import SdkError
from .checkpoint import Position
from .console import Progress

CHECK_EVERY = 16
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

    def to_dict(self) -> dict[str, list[float]]:
        return attrs.asdict(self)


def _finite(weights: dict[str, np.ndarray]) -> bool:
    return all(np.isfinite(w).all() for w in weights.values() if w.dtype.kind == "f")


class Trainable(Protocol):
    """What the loop needs of a :class:`~sdk_core.runtime.stack.Stack`."""

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray], what: str = ...) -> None: ...


@attrs.define
class Loop:
    """One call of ``fit``: the data, the step and the settings, run epoch by epoch."""

    stack: Trainable
    step: Callable[[np.ndarray, np.ndarray], Any]
    x: np.ndarray
    y: np.ndarray
    batch: int
    shuffle: bool
    seed: int
    forget_step: Callable[[], None]
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
        n, batch = len(self.x), self.batch
        rng = np.random.default_rng(self.seed)
        starts = range(0, n, batch)
        chunk = max(1, CHUNK_BYTES // max(self.x[:1].nbytes * batch, 1)) * batch
        history, first_epoch, done = History(), 0, 0
        if resume is not None:
            history, first_epoch, done = History(**resume.history), resume.epoch, resume.step
        previous: dict[str, np.ndarray] | None = None
        for epoch in range(first_epoch, epochs):
            t0 = time.perf_counter()
            snapshot = self.stack.get_weights()
            if not _finite(snapshot):  # the last update of the previous epoch diverged
                self._diverged(previous, epoch - 1, len(starts), len(starts), "the weights it left are not finite")
            first, losses = 0, []
            if resume is not None and epoch == resume.epoch:  # replay this epoch's shuffle, skip what was done
                rng.bit_generator.state = resume.rng
                first, losses = resume.batch, [resume.loss_sum]
            epoch_rng = dict(rng.bit_generator.state)
            order = rng.permutation(n) if self.shuffle else None
            bar = Progress(len(starts), f"epoch {epoch + 1}/{epochs}") if progress else None
            pending: list[tuple[Any, int]] = []
            read, last = first, len(starts) - 1
            step, checkpoint, every = self.step, self.checkpoint, self.every  # locals: this loop is hot
            for i in range(first, len(starts)):
                s = starts[i]
                if order is None:
                    xb, yb = self.x[s : s + batch], self.y[s : s + batch]
                else:
                    at = s % chunk
                    if at == 0 or i == first:
                        idx = order[s - at : s - at + chunk]
                        xc, yc = self.x[idx], self.y[idx]
                    xb, yb = xc[at : at + batch], yc[at : at + batch]
                pending.append((step(xb, yb), len(xb)))
                done += 1
                save = checkpoint is not None and (done % every == 0 if every else i == last)
                if save or i == last or len(pending) == CHECK_EVERY:
                    self._read(pending, losses, snapshot, epoch, read, len(starts))
                    read, pending = i + 1, []
                    if save and checkpoint is not None:
                        checkpoint(Position(epoch, i + 1, done, epoch_rng, sum(losses), history.to_dict()))
                if bar:
                    bar.update()
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
        steps: int,
    ) -> None:
        """Read the pending losses back (weighted by batch size); stop at a non-finite one."""
        for j, (value, k) in enumerate(pending):
            loss = float(value)
            if not math.isfinite(loss):
                self._diverged(snapshot, epoch, first + j + 1, steps, f"the loss is {loss}")
            losses.append(loss * k)

    def _diverged(self, restore: dict[str, np.ndarray] | None, epoch: int, step: int, steps: int, why: str) -> None:
        self.forget_step()  # its optimizer state holds the non-finite values too
        if restore is not None:
            self.stack.set_weights(restore)
            kept = f"the model keeps its weights from the start of epoch {epoch + 1}"
        else:
            kept = "no finite weights to go back to"
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, step {step} of {steps}: {why}; {kept} "
            "(lower the learning rate, check the optimizer settings and the data)"
        )
