"""Search spaces and TuningRun settings: every bad input is refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

import sm_imgclf as smi
from sm_imgclf.contracts.status import TrialRecord
from sm_imgclf.contracts.tuning import TuningSpec

CHANNELS = {"train": "file:///data/train", "valid": "file:///data/valid"}


@pytest.fixture
def est() -> smi.TransferLearningEstimator:
    session = smi.Session(smi.FakeBackend())
    return smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, hyperparameters={"epochs": 6}
    )


def tuning(
    est: smi.TransferLearningEstimator, space: dict | None = None, **options: object
) -> smi.TuningRun:
    return smi.TuningRun(est, space or {"lr": smi.Continuous(1e-4, 1e-1, scale="log")}, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rate": smi.Continuous(0.01, 0.1)}, "'lr'"),
        ({"batch_size": smi.Continuous(16.0, 64.0)}, "batch_size is an integer"),
        ({"lr": smi.Integer(1, 3)}, "space['lr'] must be"),
        ({"lr": smi.Continuous(0.0, 0.1)}, "lr accepts"),
        ({"batch_size": smi.Integer(0, 64)}, "batch_size accepts"),
        ({"momentum": smi.Continuous(0.5, 1.5)}, "momentum accepts"),
        ({"batch_size": smi.Categorical([])}, "non-empty list"),
        ({"batch_size": smi.Categorical([32, "64"])}, "values of one type"),
        ({"batch_size": smi.Categorical([32, 32])}, "distinct values"),
        ({"optimizer": smi.Categorical(["sgd", "lamb"])}, "optimizer accepts"),
        ({"optimizer": smi.Continuous(0.1, 0.2)}, "a Categorical range"),
        ({"lr": smi.Continuous(0.1, 0.01)}, "min < max"),
        ({"weight_decay": smi.Continuous(0.0, 0.1, scale="log")}, "> 0 on a log scale"),
        ({"lr": smi.Continuous(0.1, 2.0, scale="reverse_log")}, "within [0, 1)"),
        ({"batch_size": smi.Integer(8, 64, scale="reverse_log")}, "within [0, 1)"),
        ({"lr": smi.Continuous(0.01, 0.1, scale="logarithmic")}, "'log'"),
        ({"batch_size": [32, 64]}, "Wrap lists in Categorical([32, 64])"),
        ({"lr": 0.01}, "estimator's hyperparameters"),
        ({}, "non-empty mapping"),
    ],
)
def test_bad_spaces(est: smi.TransferLearningEstimator, space: dict, message: str) -> None:
    with pytest.raises(smi.ConfigurationError) as caught:
        smi.TuningRun(est, space)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"objective": "valid:acc"}, "valid:accuracy"),
        ({"objective": "test:accuracy"}, "leak it into model selection"),
        ({"max_jobs": 2, "max_parallel_jobs": 3}, "at most max_jobs (2)"),
        ({"max_jobs": 0}, "max_jobs must be"),
        ({"strategy": "bayes"}, "bayesian"),
        ({"direction": "up"}, "direction must be"),
        ({"early_stopping": "on"}, "'auto'"),
        ({"min_epochs": 7}, "min_epochs must be"),
        ({"warm_start": [""]}, "warm_start must be"),
        ({"warm_start_type": "same"}, "identical_data"),
        ({"strategy": "hyperband", "early_stopping": "auto"}, "stops trials early itself"),
    ],
)
def test_bad_settings(est: smi.TransferLearningEstimator, options: dict, message: str) -> None:
    with pytest.raises(smi.ConfigurationError) as caught:
        tuning(est, **options)
    assert message in str(caught.value)


def test_objective_error_lists_the_metrics_the_job_prints(est) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(smi.ConfigurationError) as caught:
        tuning(est, objective="val_acc")
    for name in ("train:loss", "train:accuracy", "valid:loss", "valid:accuracy"):
        assert name in str(caught.value)


def test_hyperband_owns_the_epochs(est: smi.TransferLearningEstimator) -> None:
    with pytest.raises(smi.ConfigurationError, match="Hyperband decides how many epochs"):
        tuning(est, {"epochs": smi.Integer(2, 6)}, strategy=smi.Strategy.HYPERBAND)


def test_grid_needs_lists_and_caps_its_jobs(est: smi.TransferLearningEstimator) -> None:
    with pytest.raises(smi.ConfigurationError, match="Categorical range for strategy='grid'"):
        tuning(est, strategy="grid")
    run = tuning(
        est,
        {"batch_size": smi.Categorical([16, 32]), "optimizer": smi.Categorical(["sgd", "adamw"])},
        strategy="grid",
        max_jobs=20,
        max_parallel_jobs=8,
    )
    assert run.max_jobs == 4 and run.max_parallel_jobs == 4
    grid = {"batch_size": smi.Categorical([16, 32]), "optimizer": smi.Categorical(["sgd", "adamw"])}
    assert tuning(est, grid, strategy="grid").max_jobs == 4  # the default is the grid size
    with pytest.raises(smi.ConfigurationError, match=r"at least the grid size \(4\)"):
        tuning(est, grid, strategy="grid", max_jobs=3, max_parallel_jobs=1)


def test_objective_needs_its_channel(est: smi.TransferLearningEstimator) -> None:
    with pytest.raises(smi.ConfigurationError, match="a 'valid' channel"):
        tuning(est).plan({"train": "file:///data/train"})
    assert tuning(est, objective="train:loss").plan({"train": "file:///t"}).direction == "minimize"


def test_plan_is_frozen_and_round_trips(est: smi.TransferLearningEstimator) -> None:
    run = tuning(
        est,
        {
            "lr": smi.Continuous(1e-4, 1e-1, scale="log"),
            "momentum": smi.Continuous(0.5, 0.99, scale="reverse_log"),
            "batch_size": smi.Categorical([32, 64]),
            "head_hidden": smi.Integer(0, 256),
        },
        strategy="random",
        max_jobs=8,
        seed=3,
        warm_start=["older"],
    )
    spec = run.plan(CHANNELS, name="dogs-tune")
    assert [name for name, _ in spec.space] == ["batch_size", "head_hidden", "lr", "momentum"]
    assert TuningSpec.from_dict(spec.to_dict()) == spec
    trial = spec.trial_spec(4, {"lr": 0.02, "batch_size": 64})
    assert trial.job_name == "dogs-tune-004" and trial.hyperparameters.batch_size == 64
    assert trial.hyperparameters.epochs == 6
    with pytest.raises(smi.ConfigurationError, match="at most 32 characters"):
        run.plan(CHANNELS, name="x" * 33)


def test_strategy_accepts_names_and_members(est: smi.TransferLearningEstimator) -> None:
    assert tuning(est, strategy="random").strategy is smi.Strategy.RANDOM
    assert tuning(est, strategy=smi.Strategy.BAYESIAN).strategy == "bayesian"


def test_result_types_the_values_and_ranks_trials(
    est: smi.TransferLearningEstimator, tmp_path: Path
) -> None:
    backend = est.session.backend
    result = tuning(est).run(CHANNELS, wait=False, name="fake-tune")
    assert result.status == "InProgress"
    backend.finish_tuning(
        "fake-tune",
        [  # type: ignore[attr-defined]
            TrialRecord(
                "fake-tune-000",
                "completed",
                {"lr": '"0.01"', "batch_size": '"64"'},
                0.81,
                100.0,
                160.0,
                epochs=6,
            ),
            TrialRecord(
                "fake-tune-001",
                "pruned",
                {"lr": "0.5", "batch_size": "32"},
                0.2,
                100.0,
                120.0,
                epochs=1,
            ),
            TrialRecord(
                "fake-tune-002",
                "completed",
                {"lr": "0.003", "batch_size": "32"},
                0.9,
                110.0,
                170.0,
                epochs=6,
            ),
            TrialRecord(
                "fake-tune-003",
                "failed",
                {"lr": "0.0001", "batch_size": "32"},
                failure_reason="CUDA out of memory",
            ),
        ],
    )
    best = result.best
    assert best.job_name == "fake-tune-002" and best.objective == 0.9
    assert best.hyperparameters == {"lr": 0.003, "batch_size": 32}
    assert result.trials[0].hyperparameters == {"lr": 0.01, "batch_size": 64}
    assert result.trials[0].duration == 60.0 and best.job.name == "fake-tune-002"
    lines = result.table().splitlines()
    assert lines[1].startswith("* fake-tune-002") and "pruned" in lines[3]
    assert "failed" in lines[4] and "Completed" in str(result)
    frame = result.to_pandas()
    assert list(frame["status"]) == ["completed", "pruned", "completed", "failed"]
    figure = result.plot(tmp_path / "trials.png")
    assert (tmp_path / "trials.png").stat().st_size > 5000 and len(figure.axes) == 3
    retrain = est.with_hyperparameters(best.hyperparameters)
    assert retrain.hyperparameters.lr == 0.003 and retrain.hyperparameters.epochs == 6


def test_failed_run_raises_with_the_reasons(est: smi.TransferLearningEstimator) -> None:
    result = tuning(est).run(CHANNELS, wait=False, name="fake-fail")
    est.session.backend.finish_tuning(
        "fake-fail",
        [],
        failure_reason=(  # type: ignore[attr-defined]
            "All 3 trials failed; their reasons: bad weights path"
        ),
    )
    with pytest.raises(smi.TuningFailedError, match="bad weights path") as caught:
        result.wait(logs=False, poll=0.01)
    assert "bad weights path" in (caught.value.reason or "")
    with pytest.raises(smi.BackendError, match="no completed trial"):
        _ = result.best
