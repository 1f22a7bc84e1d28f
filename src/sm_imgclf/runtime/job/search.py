"""A head-only search inside one job: every trial trains a new head on features computed once.

Trials run one after another with an in-memory Optuna study (the same sampler
and pruner as the local tuner). Each trial's epochs are logged as
``trial N, epoch E: valid.accuracy=...`` and its outcome as one
:func:`~sm_imgclf.contracts.search.trial_line`; the best completed trial's
head goes into the model, and its checks records become the job's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.contracts.hyperparameters import BY_NAME, Hyperparameters
from sm_imgclf.contracts.metrics import parse_metrics
from sm_imgclf.contracts.search import trial_line
from sm_imgclf.contracts.status import TrialRecord, TrialState
from sm_imgclf.contracts.tuning import Search
from sm_imgclf.errors import ConfigurationError
from sm_imgclf.runtime.job.loop import Trainer
from sm_imgclf.runtime.models import HeadSpec, new_head

if TYPE_CHECKING:
    from torch import nn

    from sm_imgclf.runtime.job.contract import JobEnvironment
    from sm_imgclf.runtime.job.data import SplitData


@dataclass
class Outcome:
    """One trial's end: its record, and for a completed trial what the package needs."""

    record: TrialRecord
    trainer: Trainer | None = None
    head: HeadSpec | None = None
    hp: Hyperparameters | None = None
    state: dict[str, Any] = field(default_factory=dict)
    debug: Path | None = None


class _Verdicts:
    """The trial's control: the job's stop file, and the pruner's verdict after each epoch."""

    def __init__(
        self, trial: Any, objective: str, epochs: dict[int, dict[str, Any]], job: Any
    ) -> None:
        self.trial, self.objective, self.epochs, self.job = trial, objective, epochs, job

    def check(self) -> None:
        if self.job is not None:
            self.job.check()

    def stop_requested(self) -> bool:
        """A stop of the job ends the whole search at once (raising), not one trial."""
        self.check()
        return False

    def after_epoch(self, epoch: int, last: bool, log: Any = print, stopping: Any = None) -> None:
        import optuna

        self.check()
        value = self.epochs.get(epoch, {}).get(self.objective)
        if value is None or last:
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.objective}={value:.4f}")


def run_search(
    text: str,
    hp: Hyperparameters,
    splits: dict[str, SplitData],
    model: nn.Module,
    head: HeadSpec,
    base: Trainer,
    env: JobEnvironment,
    monitor: Any,
) -> Outcome:
    """Run the search; return the best completed trial's outcome (its head is in ``model``).

    Args:
        text: The search, as the job argument carries it.
        hp: The job's hyperparameters; each trial changes the tuned ones.
        splits: Backbone features of every split.
        model: The whole model; the best head is put in it.
        head: Its head, whose path and input size every trial keeps.
        base: The job's trainer, whose settings every trial shares.
        env: Where the checks records go.
        monitor: Builds a trial's checks recorder: ``monitor(hp, folder)``.
    """
    import optuna

    from sm_imgclf.runtime.optuna_study import memory_study, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = Search.from_argument(text)
    study = memory_study(search)
    best: tuple[int, Outcome] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="search-"))
    print(
        f"search: {search.max_jobs} trials ({search.strategy}) of the head, one after "
        f"another, on features computed once; objective {search.objective}",
        flush=True,
    )
    for number in range(search.max_jobs):
        trial = study.ask()
        values = suggest(trial, search.space_map)
        trial_hp = hp.updated(**{k: BY_NAME[k].parse(v) for k, v in values.items()})
        outcome = _trial(
            number,
            trial,
            search,
            values,
            trial_hp,
            splits,
            model,
            head,
            base,
            workdir,
            env,
            monitor,
        )
        _tell(study, trial, outcome.record)
        print(trial_line(outcome.record, number), flush=True)
        if outcome.trainer is not None and _better(outcome, best, search.direction):
            best = (number, outcome)
    try:
        if best is None:
            raise ConfigurationError(
                "No trial of the search completed; their reasons are in the log's 'trial ' lines."
            )
        number, outcome = best
        chosen = ", ".join(f"{k}={v}" for k, v in sorted(outcome.record.hyperparameters.items()))
        print(
            f"search: best trial {number} ({chosen}) {search.objective}="
            f"{outcome.record.objective:.4f}; its head is the packaged model's",
            flush=True,
        )
        return _adopt(outcome, model, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _trial(
    number: int,
    trial: Any,
    search: Search,
    values: dict[str, str],
    hp: Hyperparameters,
    splits: dict[str, SplitData],
    model: nn.Module,
    head: HeadSpec,
    base: Trainer,
    workdir: Path,
    env: JobEnvironment,
    monitor: Any,
) -> Outcome:
    import optuna
    import torch

    torch.manual_seed(hp.seed)
    spec = HeadSpec(head.path, head.in_features, head.num_classes, hp.head_hidden, hp.head_dropout)
    layer = new_head(spec).to(base.device)
    epochs: dict[int, dict[str, Any]] = {}

    def log(line: str) -> None:
        rows = parse_metrics([line])
        if rows and rows[0]["epoch"] is not None:
            epochs[rows[0]["epoch"]] = rows[0]
            line = f"epoch {rows[0]['epoch']}: " + line.partition(" ")[2].replace(":", ".")
        print(f"trial {number}, {line}", flush=True)

    debug = workdir / f"trial-{number}" / "debug"
    recorder = monitor(hp, debug)
    trainer = Trainer(
        layer,
        hp=hp,
        device=base.device,
        mean=base.mean,
        std=base.std,
        checkpoint_dir=workdir / f"trial-{number}" / "checkpoints",
        log=log,
        features=True,
        control=_Verdicts(trial, search.objective, epochs, base.control),  # type: ignore[arg-type]
        monitor=recorder,
    )
    started = time.time()

    def record(status: TrialState, **found: Any) -> TrialRecord:
        return TrialRecord("", status, values, started=started, ended=time.time(), **found)

    try:
        state = trainer.fit(splits["train"], splits.get("valid"))
    except optuna.TrialPruned as pruned:
        last = max(epochs) if epochs else None
        return Outcome(
            record(
                TrialState.PRUNED,
                epochs=last,
                note=str(pruned),
                objective=epochs.get(last or 0, {}).get(search.objective),
            )
        )
    except (RuntimeError, ValueError, ConfigurationError) as error:  # diverged, OOM ...
        return Outcome(record(TrialState.FAILED, failure_reason=f"{type(error).__name__}: {error}"))
    finally:
        if recorder is not None:
            recorder.close()
    value = epochs.get(state["best_epoch"], {}).get(search.objective)
    if value is None:
        return Outcome(
            record(
                TrialState.FAILED,
                epochs=max(epochs, default=None),
                failure_reason=f"no {search.objective} was measured",
            )
        )
    return Outcome(
        record(TrialState.COMPLETED, objective=value, epochs=max(epochs)),
        trainer,
        spec,
        hp,
        state,
        debug,
    )


def _tell(study: Any, trial: Any, record: TrialRecord) -> None:
    import optuna

    if record.status is TrialState.COMPLETED:
        study.tell(trial, record.objective)
    else:
        study.tell(
            trial,
            state=optuna.trial.TrialState.PRUNED
            if record.status is TrialState.PRUNED
            else optuna.trial.TrialState.FAIL,
        )


def _better(outcome: Outcome, best: tuple[int, Outcome] | None, direction: str) -> bool:
    if best is None:
        return True
    new, old = outcome.record.objective or 0.0, best[1].record.objective or 0.0
    return new > old if direction == "maximize" else new < old


def _adopt(best: Outcome, model: nn.Module, env: JobEnvironment) -> Outcome:
    """Put the best head in the model and its checks records where the job's go."""
    from sm_imgclf.runtime.models import set_submodule

    assert best.trainer is not None and best.head is not None
    set_submodule(model, best.head.path, best.trainer.model)
    if best.debug is not None and best.debug.is_dir():
        target = env.output_dir / "debug"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(best.debug, target)
    return best
