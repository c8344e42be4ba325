"""Hyperparameter search with Optuna: learning rate (the peak of a cosine decay over the
trial), batch size, optimizer and weight decay.

Optuna's TPE sampler proposes each trial; the median pruner stops a trial whose validation
accuracy after an epoch falls below the median of earlier trials at that epoch. The study lives
in an Optuna storage (an SQLite file), so a search can be stopped, resumed and inspected with
Optuna's own tools (``optuna-dashboard sqlite:///sdk-tune.db``). Optuna is an optional
dependency: ``pip install 'sdk-core[tune]'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import SdkError
from ..model import spec as S
from ..model.files import check_output
from ..runtime.stack import Stack
from ..runtime.training import TrainingDiverged
from .compare import OPTIMIZERS, Data, annealed

BATCH_SIZES = (16, 32, 64, 128)


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SdkError("the search needs Optuna: pip install 'sdk-core[tune]' (or pip install optuna)") from None
    return optuna


@attrs.frozen
class SearchResult:
    """The best trial's settings and accuracy, every trial, and where the study is stored."""

    best: dict[str, Any]
    best_accuracy: float
    trials: tuple[dict[str, Any], ...]
    storage: str
    study: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def search(
    make_stack: Callable[[S.ModelSpec], Stack],
    spec: S.ModelSpec,
    data: Data,
    trials: int = 20,
    budget: float | None = None,
    epochs: int = 3,
    storage: str = "sdk-tune.db",
    study: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run up to ``trials`` trials (or until ``budget`` seconds pass) of ``epochs`` each, and
    return the best. ``storage`` is the SQLite file; a study of the same name there is resumed."""
    optuna = require_optuna()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SdkError(f"'trials' must be a positive int (got {trials!r})")
    if budget is not None and not budget > 0:
        raise SdkError(f"'budget' must be a positive number of seconds (got {budget!r})")
    check_output(storage, what="Optuna storage")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study or f"sdk-{spec.name or 'model'}"
    url = f"sqlite:///{os.path.abspath(storage)}"
    x, y, xv, yv = data

    def objective(trial: Any) -> float:
        rule = OPTIMIZERS[trial.suggest_categorical("optimizer", list(OPTIMIZERS))]
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        batch = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
        optimizer = annealed(attrs.evolve(rule, lr=lr, weight_decay=decay), epochs * math.ceil(len(x) / batch))
        stack = make_stack(spec)
        accuracy = 0.0
        for epoch in range(epochs):
            try:
                stack.fit(x, y, epochs=1, batch_size=batch, optimizer=optimizer, seed=seed + epoch)
            except TrainingDiverged:
                return 0.0
            accuracy = stack.evaluate(xv, yv)["accuracy"]
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned
        return accuracy

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    found = optuna.create_study(
        study_name=name, storage=url, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
    )

    def report(study: Any, trial: Any) -> None:
        if progress:
            value = "pruned" if trial.value is None else f"accuracy {trial.value:.4f}"
            progress(f"search trial {trial.number}: {value} {trial.params}")

    found.optimize(objective, n_trials=trials, timeout=budget, callbacks=[report], catch=(SdkError,))
    done = [t for t in found.trials if t.value is not None and math.isfinite(t.value)]
    if not done:
        raise SdkError("no search trial finished: give more --trials or a larger --budget")
    rows = tuple(
        {"number": t.number, "state": t.state.name.lower(), "value": t.value, **t.params} for t in found.trials
    )
    best = found.best_trial
    return SearchResult(dict(best.params), float(best.value), rows, os.path.abspath(storage), name)
