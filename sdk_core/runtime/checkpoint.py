"""Checkpoints: everything a training run needs to go on after ``kill -9``, in any framework.

A checkpoint is one safetensors file, written atomically (see :mod:`sdk_core.model.files`):

- tensors ``weights/<name>``: the canonical weights;
- tensors ``optimizer/<slot>/<name>``: the optimizer state in the canonical layout
  (:class:`~sdk_core.model.optim.OptimizerState`), so a run checkpointed with PyTorch resumes
  with JAX;
- metadata: the spec, the optimizer, the loss, the number of samples and the batch size, and
  the position: epoch, batch within the epoch, updates done, the shuffling RNG's state at the
  start of the epoch, the epoch's loss so far and the history of the finished epochs.

Sharded training (ZeRO) writes a folder ``step-<updates>/`` instead: each of the ``N`` ranks
writes ``rank-<r>-of-<N>.safetensors`` atomically, holding rows ``r*c`` to ``(r+1)*c`` (``c`` =
ceil(rows / N)) of axis 0 of every array above, then rank 0 writes ``manifest.json`` last,
after every rank said its shard is written: each array's full shape, dtype and the rows of
each rank, and the metadata. A folder without its manifest, or with a shard missing or
damaged, is not a checkpoint: resuming takes the one before. It loads on any number of
processes (full arrays are assembled from the shards), and ``sdk checkpoint consolidate``
turns it into one ordinary weights file.

Files are named ``step-<updates>.safetensors``; the newest ``keep`` are kept. Resuming
replays the epoch's shuffle from the saved RNG state and skips the batches already done, so an
interrupted run gives the same loss curve as an uninterrupted one (dropout masks drawn inside
a plugin are the exception: their random state stays with the framework).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError, WeightsError
from ..model.files import atomic_write
from ..model.optim import Optimizer, OptimizerState
from ..model.weights import load_weights, save_weights

FORMAT = "sdk_core-checkpoint/1"
SHARDED = "sdk_core-sharded-checkpoint/1"
NAME = re.compile(r"^step-(\d+)(\.safetensors)?$")
MANIFEST = "manifest.json"


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
        """The checkpoints in the directory (files, and sharded checkpoints' folders, complete
        or not), oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.directory.iterdir()
            if (m := NAME.match(p.name)) and p.is_dir() != bool(m.group(2))
        ]
        return [p for _, p in sorted(found)]

    def save(
        self, weights: dict[str, np.ndarray], state: OptimizerState, run: Run, position: Position, framework: str
    ) -> Path:
        """Write one checkpoint atomically, then drop all but the newest ``keep``."""
        self.directory.mkdir(exist_ok=True)
        tensors, meta = _contents(weights, state, run, position, framework)
        path = self.directory / f"step-{position.step:010d}.safetensors"
        save_weights(path, tensors, meta)
        self._prune()
        return path

    def save_sharded(
        self,
        weights: dict[str, np.ndarray],
        state: OptimizerState,
        run: Run,
        position: Position,
        framework: str,
        rank: int,
        size: int,
        barrier: Callable[[float], float],
    ) -> Path:
        """Write this rank's shard of one sharded checkpoint (every rank calls this with the
        same full arrays). ``barrier(ok)`` returns the sum of ``ok`` over the ranks once every
        rank called it (an all-reduce): rank 0 writes the manifest only when all shards are
        written, then drops all but the newest ``keep``."""
        tensors, meta = _contents(weights, state, run, position, framework)
        folder = self.directory / f"step-{position.step:010d}"
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {}
        mine: dict[str, np.ndarray] = {}
        for key, value in tensors.items():
            value = np.asarray(value)
            rows = _rows(value.shape, size)
            arrays[key] = {"shape": list(value.shape), "dtype": value.dtype.name, "rows": rows}
            lo, hi = rows[rank]
            if hi > lo or (value.ndim == 0 and rank == 0):
                mine[key] = value[lo:hi] if value.ndim else value
        files = [f"rank-{r}-of-{size}.safetensors" for r in range(size)]
        save_weights(folder / files[rank], mine, {"format": SHARDED})
        if barrier(1.0) != size:
            raise CheckpointError(f"sharded checkpoint '{folder}': a rank could not write its shard")
        if rank == 0:
            manifest = {"format": SHARDED, "world": size, "files": files, "arrays": arrays, "meta": meta}
            atomic_write(folder / MANIFEST, json.dumps(manifest).encode())
            self._prune()
        return folder

    def _prune(self) -> None:
        for old in self.files()[: -self.keep]:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        files = self.files()
        return files[-1] if files else None

    def load(self, run: Run, optimizer: Optimizer) -> tuple[dict[str, np.ndarray], OptimizerState, Position] | None:
        """The newest checkpoint of this run, or ``None`` when the directory has none. A
        checkpoint of another run (another spec, optimizer, loss, data size or batch size) is
        refused, naming what differs."""
        found = newest(self.directory)
        if found is None:
            return None
        path, tensors, meta = found
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


def _contents(
    weights: dict[str, np.ndarray], state: OptimizerState, run: Run, position: Position, framework: str
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A checkpoint's tensors (``weights/<name>``, ``optimizer/<slot>/<name>``) and metadata."""
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
    return tensors, meta


def _rows(shape: tuple[int, ...], size: int) -> list[tuple[int, int]]:
    """Each rank's rows ``[lo, hi)`` of axis 0: ``ceil(rows / size)`` a rank, the last ones
    fewer or none (a scalar: rank 0's, as ``(0, 0)``)."""
    n = shape[0] if shape else 0
    c = math.ceil(n / size) if n else 0
    return [(min(r * c, n), min((r + 1) * c, n)) for r in range(size)]


def read_sharded(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The full arrays and metadata of a sharded checkpoint, assembled from every rank's
    shard; :class:`CheckpointError` when it is not complete (no manifest, a shard missing,
    damaged or not matching the manifest)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files, arrays, meta = manifest["files"], manifest["arrays"], manifest["meta"]
        if manifest.get("format") != SHARDED or len(files) != manifest["world"]:
            raise ValueError("not a sharded checkpoint's manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"'{folder}' has no readable manifest ({exc})") from None
    shards = []
    for name in files:
        try:
            shards.append(load_weights(folder / name)[0])
        except WeightsError as exc:
            raise CheckpointError(f"'{folder}': shard {name} cannot be read: {exc}") from None
    tensors = {}
    for key, info in arrays.items():
        shape, rows = tuple(info["shape"]), info["rows"]
        try:
            if not shape:
                value = shards[0][key]
            else:
                parts = [shards[r][key] for r, (lo, hi) in enumerate(rows) if hi > lo]
                value = np.concatenate(parts) if parts else np.zeros(shape, info["dtype"])
        except KeyError:
            raise CheckpointError(f"'{folder}': a shard lacks '{key}'") from None
        if value.shape != shape or value.dtype.name != info["dtype"]:
            raise CheckpointError(f"'{folder}': '{key}' assembles to {value.shape} {value.dtype}, not {shape}")
        tensors[key] = value
    return tensors, meta


def newest(directory: str | Path) -> tuple[Path, dict[str, np.ndarray], dict[str, str]] | None:
    """The newest checkpoint in ``directory`` that can be used, with its tensors and metadata:
    an incomplete sharded one (a rank died while saving) is passed over for the one before;
    ``None`` when there is none."""
    for path in reversed(Checkpoints(directory).files()):
        if path.is_dir():
            try:
                return (path, *read_sharded(path))
            except CheckpointError:
                continue
        try:
            return (path, *load_weights(path))
        except WeightsError as exc:
            raise CheckpointError(f"checkpoint '{path}' cannot be read: {exc}") from None
    return None
