"""Local tuning end to end: real training jobs as trials, pruning, resuming, failures."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import optuna
import pytest

import sm_imgclf as smi
from sm_imgclf.backends.local.tuner import STUDY
from sm_imgclf.contracts.tuning import TuningSpec

pytestmark = pytest.mark.slow
TINY = {"image_size": 16, "batch_size": 32, "augmentation": "none", "epochs": 3}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[smi.LocalSession, smi.Channels]:
    root = tmp_path_factory.mktemp("tune")
    smi.digits_to_folder(root / "images", limit_per_class=20)
    session = smi.LocalSession(root / "session")
    data = smi.ImageFolderDataset(root / "images").split(valid=0.3, seed=0)
    return session, data.upload(session, "digits")


def estimator(session: smi.Session, **hp: object) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, trainable="all", hyperparameters={**TINY, **hp}
    )


SPACE = {"lr": smi.Continuous(1e-5, 0.5, scale="log"), "batch_size": smi.Categorical([16, 32])}


def job_starts(session: smi.LocalSession, job: str) -> int:
    log = (session.root / "jobs" / job / "log.txt").read_text()
    return sum(line.startswith("job: ") for line in log.splitlines())


def test_six_trials_two_at_a_time_give_typed_best_values(digits: tuple) -> None:
    session, channels = digits
    run = smi.TuningRun(estimator(session), SPACE, max_jobs=6, max_parallel_jobs=2)
    result = run.run(channels, name="bayes", logs=False)
    assert result.status == "Completed" and len(result.trials) == 6
    assert {t.status for t in result.trials} == {"completed"}
    best = result.best
    assert isinstance(best.hyperparameters["lr"], float)
    assert isinstance(best.hyperparameters["batch_size"], int)
    assert best.objective == max(t.objective for t in result.trials if t.objective is not None)
    # The objective is the packaged model's: the best epoch's valid accuracy.
    assert best.objective == max(m.get("valid:accuracy", 0) for m in best.job.metrics)
    starts = [t.job.describe() for t in result.trials]
    assert all(s.status == "Completed" for s in starts)
    with best.job.deploy("bayes-best") as endpoint:
        image = next((Path(channels["valid"].removeprefix("file://")) / "3").glob("*.png"))
        answer = endpoint.predict(image, top_k=2)
        assert answer.label in [str(d) for d in range(10)] and len(answer.top_k) == 2
    again = estimator(session).with_hyperparameters(best.hyperparameters)
    assert again.hyperparameters.lr == best.hyperparameters["lr"]


def test_interrupted_run_does_not_repeat_finished_trials(digits: tuple) -> None:
    session, channels = digits
    run = smi.TuningRun(
        estimator(session), SPACE, strategy="random", max_jobs=5, max_parallel_jobs=2
    )
    result = run.run(channels, name="resume", wait=False)
    deadline = time.monotonic() + 120
    while sum(t.status == "completed" for t in result.refresh().trials) < 2:
        assert time.monotonic() < deadline and result.status == "InProgress"
        time.sleep(0.5)
    result.stop()
    while result.refresh().status not in ("Stopped", "Completed", "Failed"):
        time.sleep(0.5)
    assert result.status == "Stopped"
    finished = {t.job_name for t in result.trials if t.status == "completed"}
    with pytest.raises(smi.BackendError, match="exists with other settings"):
        smi.TuningRun(
            estimator(session), SPACE, strategy="random", max_jobs=6, max_parallel_jobs=2
        ).run(channels, name="resume")
    final = run.run(channels, name="resume", logs=False)
    assert final.status == "Completed" and len(final.trials) == 5
    assert {t.status for t in final.trials} == {"completed"}
    for name in finished:
        assert job_starts(session, name) == 1  # run once, never again
    for trial in final.trials:
        assert len([m for m in trial.job.metrics if m["epoch"] is not None]) == 3


def test_hyperband_prunes_and_records_it(digits: tuple) -> None:
    session, channels = digits
    run = smi.TuningRun(
        estimator(session, epochs=4),
        SPACE,
        strategy="hyperband",
        max_jobs=8,
        max_parallel_jobs=2,
        seed=1,
    )
    result = run.run(channels, name="hyper", logs=False)
    pruned = [t for t in result.trials if t.status == "pruned"]
    assert pruned, result.table()
    for trial in pruned:
        verdict = int(re.match(r"pruned at epoch (\d+):", trial.note or "").group(1))  # type: ignore[union-attr]
        trained = [m["epoch"] for m in trial.job.metrics if m["epoch"] is not None]
        assert trained[-1] == verdict == trial.epochs < 4, trial.job.logs()  # not one more
        assert trial.job.status == "Stopped"
    completed = [t for t in result.trials if t.status == "completed"]
    assert all(t.epochs == 4 and t.note is None for t in completed), result.table()
    assert result.best.status == "completed" and result.best.epochs == 4
    assert result.table().splitlines()[1].startswith("* ")  # the best is the top row


def test_objective_never_printed_fails_fast_with_the_printed_names(digits: tuple) -> None:
    session, channels = digits
    spec = smi.TuningRun(estimator(session, epochs=1), SPACE, max_jobs=4).plan(
        channels, name="nometric"
    )
    without_valid = {**spec.to_dict()}
    without_valid["training"]["channels"] = [["train", channels["train"]]]
    session.backend.start_tuning(TuningSpec.from_dict(without_valid))
    with pytest.raises(smi.TuningFailedError) as caught:
        smi.TuningResult("nometric", session).wait(logs=False, poll=0.5)
    message = str(caught.value)
    assert "'valid:accuracy' never appeared" in message and "train:accuracy" in message
    assert len(smi.TuningResult.attach("nometric", session).trials) <= 2


def test_all_trials_failing_ends_with_their_reasons(digits: tuple, tmp_path: Path) -> None:
    session, channels = digits
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04 cut short")  # every job fails to read it
    est = smi.TransferLearningEstimator(
        "resnet18", session=session, weights=str(tmp_path / "truncated.pth"), hyperparameters=TINY
    )
    run = smi.TuningRun(est, SPACE, max_jobs=10, max_parallel_jobs=1)
    with pytest.raises(smi.TuningFailedError) as caught:
        run.run(channels, name="broken", logs=False)
    reason = caught.value.reason or ""
    assert "The first 3 trials failed" in reason and "truncated.pth" in reason
    assert reason.count("broken-00") == 3
    assert len(smi.TuningResult.attach("broken", session).trials) == 3


def test_warm_start_seeds_the_study_with_the_parent_trials(digits: tuple) -> None:
    session, channels = digits
    parent = smi.TuningRun(
        estimator(session, epochs=1), SPACE, max_jobs=2, max_parallel_jobs=2
    ).run(channels, name="parent", logs=False)
    child = smi.TuningRun(
        estimator(session, epochs=1), SPACE, max_jobs=1, max_parallel_jobs=1, warm_start=[parent]
    ).run(channels, name="child", logs=False)
    assert len(child.trials) == 1 and child.trials[0].job_name == "child-002"
    path = session.root / "tuning" / "child" / STUDY
    study = optuna.load_study(
        study_name="child",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(path))
        ),
    )
    seeded = [t for t in study.trials if t.user_attrs.get("warm_start")]
    assert len(seeded) == 2 and {t.user_attrs["parent"] for t in seeded} == {"parent"}
    parent_values = {json.dumps(t.user_attrs["values"], sort_keys=True) for t in seeded}
    assert parent_values == {
        json.dumps(
            {k: smi.Hyperparameters.from_dict(t.hyperparameters).to_strings()[k] for k in SPACE},
            sort_keys=True,
        )
        for t in parent.trials
    }


def test_a_budget_stops_launching_trials_and_says_why(digits: tuple) -> None:
    session, channels = digits
    # A local hour priced at $36 makes each trial's 30-second bound worth $0.30: with
    # $0.40 the second trial may start only if the first spent at most $0.10 (10 s),
    # and no trial ever starts that could take the run past $0.40.
    priced = smi.LocalSession(session.root, price_per_hour=36.0)
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=priced,
        weights=None,
        trainable="all",
        hyperparameters=TINY,
        compute=smi.Compute(max_run=30),
    )
    run = smi.TuningRun(est, SPACE, max_jobs=8, max_parallel_jobs=1, max_cost=0.40)
    assert "at most $0.40" in str(run.estimate(channels))
    result = run.run(channels, name="budget", logs=False)
    assert result.status == "Completed" and 1 <= len(result.trials) < 8
    assert result.stop_reason is not None and result.stop_reason.startswith("stopped for budget")
    assert "could pass max_cost $0.40" in str(result)
    too_small = smi.TuningRun(est, SPACE, max_jobs=2, max_parallel_jobs=1, max_cost=0.10)
    with pytest.raises(smi.TuningFailedError, match="not even one trial fits"):
        too_small.run(channels, name="budget-small", logs=False)
