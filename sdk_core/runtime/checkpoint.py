"""Checkpoints: everything a training run needs to go on after ``kill -9``, in any framework.

A checkpoint is one safetensors file, written atomically (see :mod:`sdk_core.model.files`):

- tensors ``weights/<name>``: the canonical weights;
- tensors ``optimizer/<slot>/<name>``: the optimizer state in the canonical layout
  (:class:`~sdk_core.model.optim.OptimizerState`), so a run checkpointed with PyTorch resumes
  with JAX;
- metadata: the spec, the optimizer, the loss, the number of samples and the batch size, and
  the position: epoch, batch within the epoch, updates done, the shuffling RNG's state at the
  start of the epoch, the epoch's loss so far and the history of the finished epochs.

Files are named ``step-<updates>.safetensors``; the newest ``keep`` are kept. Resuming
replays the epoch's shuffle from the saved RNG state and skips the batches already done, so an
interrupted run gives the same loss curve as an uninterrupted one (dropout masks drawn inside
a plugin are the exception: their random state stays with the framework).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError, WeightsError
from ..model.optim import Optimizer, OptimizerState
from ..model.weights import load_weights, save_weights

FORMAT = "sdk_core-checkpoint/1"
NAME = re.compile(r"^step-(\d+)\.safetensors$")


class CheckpointError(SdkError):
    """A checkpoint cannot be written, found or used for this run."""


@attrs.frozen
class Position:
    """Where a run stands: ``batch`` batches of ``epoch`` done (0-based epoch), ``step``
    updates in all, the shuffling RNG state at the start of the epoch, the epoch's weighted
    loss sum so far and the finished epochs' history."""

    epoch: int
    batch: int
    step: int
    rng: dict[str, Any]
    loss_sum: float
    history: dict[str, Any]


@attrs.frozen
class Run:
    """What must be the same for a checkpoint to resume a run."""

    spec: str
    optimizer: dict[str, Any]
    loss: str
    samples: int
    batch_size: int

    def describe(self) -> dict[str, str]:
        return {
            "spec": self.spec,
            "optimizer": json.dumps(self.optimizer),
            "loss": self.loss,
            "samples": str(self.samples),
            "batch_size": str(self.batch_size),
        }


class Checkpoints:
    """The checkpoints of one run in ``directory``: written every ``every`` updates (and at
    the end of each epoch when ``every`` is ``None``), the newest ``keep`` kept."""

    def __init__(self, directory: str | Path, every: int | None = None, keep: int = 3) -> None:
        for name, value in (("checkpoint_every", every), ("keep_checkpoints", keep)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise CheckpointError(f"'{name}' must be a positive int (got {value!r})")
        self.directory, self.every, self.keep = Path(directory), every, keep
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory '{self.directory}' is not a directory")
        if not self.directory.parent.is_dir():
            raise CheckpointError(f"checkpoint directory '{self.directory}': '{self.directory.parent}' does not exist")

    def files(self) -> list[Path]:
        """The checkpoints in the directory, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(
        self, weights: dict[str, np.ndarray], state: OptimizerState, run: Run, position: Position, framework: str
    ) -> Path:
        """Write one checkpoint atomically, then drop all but the newest ``keep``."""
        self.directory.mkdir(exist_ok=True)
        tensors = {f"weights/{k}": v for k, v in weights.items()}
        for slot, arrays in state.slots.items():
            tensors.update({f"optimizer/{slot}/{k}": np.asarray(v) for k, v in arrays.items()})
        meta = {
            "format": FORMAT,
            "framework": framework,
            **run.describe(),
            "position": json.dumps(attrs.asdict(position)),
            "optimizer_step": str(state.step),
        }
        path = self.directory / f"step-{position.step:010d}.safetensors"
        save_weights(path, tensors, meta)
        for old in self.files()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        files = self.files()
        return files[-1] if files else None

    def load(self, run: Run, optimizer: Optimizer) -> tuple[dict[str, np.ndarray], OptimizerState, Position] | None:
        """The newest checkpoint of this run, or ``None`` when the directory has none. A
        checkpoint of another run (another spec, optimizer, loss, data size or batch size) is
        refused, naming what differs."""
        path = self.latest()
        if path is None:
            return None
        try:
            tensors, meta = load_weights(path)
        except WeightsError as exc:
            raise CheckpointError(f"checkpoint '{path}' cannot be read: {exc}") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"'{path}' is not an sdk_core checkpoint")
        mine = run.describe()
        for key in ("spec", "loss", "samples", "batch_size"):
            if meta.get(key) != mine[key]:
                raise CheckpointError(f"checkpoint '{path}' belongs to another run: its {key} differs from this one's")
        if json.loads(meta.get("optimizer", "null")) != run.optimizer:
            raise CheckpointError(f"checkpoint '{path}' belongs to another run: its optimizer differs from this one's")
        try:
            position = Position(**json.loads(meta["position"]))
            step = int(meta["optimizer_step"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint '{path}' has a damaged position: {exc}") from None
        weights = {k[len("weights/") :]: v for k, v in tensors.items() if k.startswith("weights/")}
        slots: dict[str, dict[str, np.ndarray]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, slot, name = key.split("/", 2)
                slots.setdefault(slot, {})[name] = value
        return weights, OptimizerState(step, slots), position
