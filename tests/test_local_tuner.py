"""The local tuner's verdicts, on job folders written by hand: no training, no timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

import sm_imgclf as smi
from sm_imgclf.backends.local.backend import LocalBackend
from sm_imgclf.backends.local.tuner import LocalTuner, _Active
from sm_imgclf.contracts.metrics import best_line
from sm_imgclf.runtime.optuna_study import trial_record


class AlwaysPrune(optuna.pruners.BasePruner):
    """A pruner whose verdict is always 'prune', so any verdict the tuner asks for shows."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def prune(self, study: Any, trial: Any) -> bool:
        self.asked.append(trial.last_step)
        return True


def epoch_line(epoch: int, accuracy: float) -> str:
    return (
        f"epoch={epoch} train:loss=0.5000 train:accuracy=0.9000 valid:loss=0.4000 "
        f"valid:accuracy={accuracy:.4f}\n"
    )


@pytest.fixture
def tuner(tmp_path: Path) -> LocalTuner:
    session = smi.LocalSession(tmp_path)
    estimator = smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, hyperparameters={"epochs": 6}
    )
    spec = smi.TuningRun(
        estimator,
        {"lr": smi.Continuous(1e-4, 1e-1, scale="log")},
        strategy="hyperband",
        max_jobs=2,
        max_parallel_jobs=1,
    ).plan({"train": str(tmp_path), "valid": str(tmp_path)}, name="late")
    backend = LocalBackend(tmp_path)
    folder = backend.tuning_dir("late")
    folder.mkdir(parents=True)
    tuner = LocalTuner(spec, backend, folder)
    tuner.study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    return tuner


def job(tuner: LocalTuner, status: str, epochs: int, reported: int = 0) -> tuple[Any, Path]:
    """A trial whose job folder holds ``epochs`` epoch lines and the final best line."""
    trial = tuner.study.ask()
    name = f"late-{trial.number:03d}"
    trial.set_user_attr("job_name", name)
    folder = tuner.backend.job_dir(name)
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"status": status}))
    lines = [epoch_line(e, 0.90 + e / 100) for e in range(1, epochs + 1)]
    if status == "Completed":
        lines.append(best_line(epochs, {"valid:accuracy": 0.90 + epochs / 100}) + "\n")
    (folder / "log.txt").write_text("".join(lines))
    tuner.active[trial.number] = _Active(trial, name, reported=reported, released=reported)
    return trial, folder


def test_a_job_that_completed_before_its_verdict_is_a_completed_trial(tuner: LocalTuner) -> None:
    # The demo's case: the tuner first reads the log after the job has finished all epochs.
    trial, _ = job(tuner, "Completed", epochs=6)
    tuner._follow(trial.number)
    record = trial_record(tuner.study.trials[0])
    assert record.status == "completed" and record.objective == pytest.approx(0.96)
    assert record.epochs == 6
    assert "came after the job had finished" in (record.note or "")
    assert tuner.study.best_trial.number == trial.number  # so it can be the best


def test_no_verdict_is_asked_at_the_last_epoch(tuner: LocalTuner) -> None:
    trial, _ = job(tuner, "Completed", epochs=6, reported=5)
    tuner._follow(trial.number)
    assert tuner.study.pruner.asked == []  # type: ignore[attr-defined]
    record = trial_record(tuner.study.trials[0])
    assert record.status == "completed" and record.note is None


def test_a_pruned_running_job_is_stopped_at_its_verdict_and_not_let_go_on(
    tuner: LocalTuner,
) -> None:
    trial, folder = job(tuner, "InProgress", epochs=2)
    tuner._follow(trial.number)
    assert tuner.active[trial.number].pruned_at == 1
    assert (folder / "stop-requested").exists()  # the job stops at its next step
    assert not (folder / "gate").exists()  # and is never let past the judged epoch
    (folder / "status.json").write_text(json.dumps({"status": "Stopped"}))
    tuner._follow(trial.number)
    record = trial_record(tuner.study.trials[0])
    assert record.status == "pruned" and record.epochs == 2
    assert record.note and record.note.startswith("pruned at epoch 1: valid:accuracy=0.9100,")


def test_an_epoch_that_goes_on_releases_the_job(tmp_path: Path, tuner: LocalTuner) -> None:
    tuner.study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial, folder = job(tuner, "InProgress", epochs=3)
    tuner._follow(trial.number)
    assert sorted(p.name for p in (folder / "gate").iterdir()) == [
        "continue-1",
        "continue-2",
        "continue-3",
    ]
    assert tuner.active[trial.number].reported == 3
