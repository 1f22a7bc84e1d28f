"""The Optuna side of tuning: study, sampler, pruner, suggestions, warm start.

The local tuner stores its study on disk; a search inside one job keeps it in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_imgclf.contracts.hyperparameters import BY_NAME
from sm_imgclf.contracts.space import Categorical, Integer, Range, grid_values
from sm_imgclf.contracts.status import TrialRecord
from sm_imgclf.contracts.tuning import Search, Strategy, TuningSpec

_STATUS = {
    "COMPLETE": "completed",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "running",
}


def open_study(spec: TuningSpec, path: Path, tuning_root: Path) -> Any:
    """Create or load the study of ``spec`` stored in ``path``; seed it from parents once."""
    import optuna

    storage = _storage(path)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="maximize" if spec.direction == "maximize" else "minimize",
        sampler=_sampler(spec),
        pruner=_pruner(spec),
        load_if_exists=True,
    )
    if not study.get_trials(deepcopy=False):
        for parent in spec.warm_start:
            _warm_start(study, spec, tuning_root / parent / path.name, parent)
    return study


def memory_study(search: Search) -> Any:
    """A study kept in memory, for a search run inside one job."""
    import optuna

    return optuna.create_study(
        direction="maximize" if search.direction == "maximize" else "minimize",
        sampler=_sampler(search),
        pruner=_pruner(search),
    )


def _storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _sampler(spec: TuningSpec | Search) -> Any:
    from optuna import samplers

    if spec.strategy is Strategy.GRID:
        return samplers.GridSampler(grid_values(spec.space_map), seed=spec.seed)
    if spec.strategy is Strategy.BAYESIAN:
        # Model-based choices start after a few random ones; with parallel trials the
        # "constant liar" keeps two running trials from being sent to the same spot.
        startup = max(2, min(10, spec.max_jobs // 3))
        return samplers.TPESampler(seed=spec.seed, n_startup_trials=startup, constant_liar=True)
    return samplers.RandomSampler(seed=spec.seed)


def _pruner(spec: TuningSpec | Search) -> Any:
    from optuna import pruners

    if spec.strategy is Strategy.HYPERBAND:
        # Asynchronous successive halving: at epochs min_epochs * 3^k a trial goes on only
        # if it is in the top third of the trials judged there so far. Unlike Hyperband's
        # brackets, every trial is pruned by one rule, so parallel trials save epochs at
        # any trial budget.
        return pruners.SuccessiveHalvingPruner(min_resource=spec.min_epochs, reduction_factor=3)
    if spec.early_stopping == "auto":
        return pruners.MedianPruner(
            n_startup_trials=spec.max_parallel_jobs, n_warmup_steps=spec.min_epochs
        )
    return pruners.NopPruner()


def distribution(value: Range) -> Any:
    """The Optuna distribution of a range (reverse log searches ``1 - x`` on a log scale)."""
    from optuna import distributions as dist

    if isinstance(value, Categorical):
        return dist.CategoricalDistribution(list(value.values))
    if isinstance(value, Integer):
        return dist.IntDistribution(value.min, value.max, log=value.scale == "log")
    if value.scale == "reverse_log":
        return dist.FloatDistribution(1 - value.max, 1 - value.min, log=True)
    return dist.FloatDistribution(value.min, value.max, log=value.scale == "log")


def suggest(trial: Any, space: Mapping[str, Range]) -> dict[str, str]:
    """Ask ``trial`` for a value of every range; return them formatted as strings."""
    values: dict[str, str] = {}
    for name, value in space.items():
        drawn: Any
        if isinstance(value, Categorical):
            drawn = trial.suggest_categorical(name, list(value.values))
        elif isinstance(value, Integer):
            drawn = trial.suggest_int(name, value.min, value.max, log=value.scale == "log")
        elif value.scale == "reverse_log":
            drawn = 1 - trial.suggest_float(name, 1 - value.max, 1 - value.min, log=True)
        else:
            drawn = trial.suggest_float(name, value.min, value.max, log=value.scale == "log")
        values[name] = BY_NAME[name].format(drawn)
    return values


def _fits(value: Range, typed: Any) -> bool:
    if isinstance(value, Categorical):
        return typed in value.values
    return bool(value.min <= typed <= value.max)


def _warm_start(study: Any, spec: TuningSpec, path: Path, parent: str) -> None:
    import optuna

    if not path.is_file():
        from sm_imgclf.errors import ConfigurationError

        raise ConfigurationError(
            f"warm_start names {parent!r}, but no local tuning run of that "
            f"name exists ({path} is missing)."
        )
    source = optuna.load_study(storage=_storage(path), study_name=parent)
    space = spec.space_map
    for old in source.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        values = old.user_attrs.get("values", {})
        if set(values) != set(space) or old.value is None or math.isnan(old.value):
            continue
        typed = {name: BY_NAME[name].parse(text) for name, text in values.items()}
        if not all(_fits(space[name], v) for name, v in typed.items()):
            continue
        params = {
            name: 1 - v if getattr(space[name], "scale", None) == "reverse_log" else v
            for name, v in typed.items()
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={n: distribution(space[n]) for n in params},
                value=old.value,
                user_attrs={"warm_start": True, "values": values, "parent": parent},
            )
        )


def trial_record(trial: Any) -> TrialRecord:
    """Describe an Optuna trial as the backend-neutral :class:`TrialRecord`."""
    steps = trial.intermediate_values
    last = steps[max(steps)] if steps else None
    value = trial.value if trial.state.name == "COMPLETE" else last
    return TrialRecord(
        job_name=str(trial.user_attrs.get("job_name", f"trial-{trial.number}")),
        status=_STATUS.get(trial.state.name, trial.state.name.lower()),
        hyperparameters=dict(trial.user_attrs.get("values", {})),
        objective=None if value is None or math.isnan(value) else float(value),
        started=trial.datetime_start.timestamp() if trial.datetime_start else None,
        ended=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
        failure_reason=trial.user_attrs.get("failure_reason"),
        epochs=trial.user_attrs.get("epochs", max(steps) if steps else None),
        note=trial.user_attrs.get("note"),
    )
