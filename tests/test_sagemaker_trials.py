"""SageMaker tuning trials: their shared checkpoints, and ranking them by the packaged epoch."""

from __future__ import annotations

import re

import pytest
from botocore.stub import Stubber

import sm_imgclf as smi
from helpers.tuning_answers import describe, summary, training_job
from sm_imgclf.contracts.metrics import (
    BEST_DEFINITIONS,
    METRIC_DEFINITIONS,
    REPORT_BEST_ENV,
    best_line,
    best_report,
)
from test_sagemaker_tuning import CHANNELS, tuning

LISTING = {"MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Ascending"}


def stub_run(stub: Stubber, name: str, answer: dict, trials: list[dict]) -> None:
    """SageMaker's description of run ``name`` and its one page of trials."""
    stub.add_response(
        "describe_hyper_parameter_tuning_job", answer, {"HyperParameterTuningJobName": name}
    )
    stub.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": trials},
        {"HyperParameterTuningJobName": name, **LISTING},
    )


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    return smi.SageMakerSession(
        bucket,
        role="arn:aws:iam::123456789012:role/SageMakerRole",
        boto_session=boto_session,
        endpoint_urls={"s3": moto_url, "sagemaker": moto_url},
    )


def last_value(log: list[str], definition: dict[str, str]) -> float:
    """What SageMaker keeps of a metric: the value of its last match in the log."""
    found = [float(m.group(1)) for line in log if (m := re.search(definition["Regex"], line))]
    return found[-1]


def test_the_best_epoch_metrics_read_only_the_best_epoch_line() -> None:
    epochs = [
        {"epoch": 1, "valid:loss": 0.3, "valid:accuracy": 0.95},
        {"epoch": 2, "valid:loss": 0.9, "valid:accuracy": 0.80},
    ]
    log = [
        f"epoch={e['epoch']} valid:loss={e['valid:loss']:.4f} "
        f"valid:accuracy={e['valid:accuracy']:.4f}"
        for e in epochs
    ] + [best_line(1, epochs[0])]
    accuracy = next(d for d in METRIC_DEFINITIONS if d["Name"] == "valid:accuracy")
    best = next(d for d in BEST_DEFINITIONS if d["Name"] == "best:valid:accuracy")
    assert last_value(log, accuracy) == 0.80  # what SageMaker ranks by: the last epoch
    assert last_value(log, best) == 0.95
    # The report for a tuner that reads the last value makes that the best epoch's too.
    assert last_value([*log, best_report(epochs[0])], accuracy) == 0.95


def test_the_best_epoch_is_reported_last_only_where_nothing_stops_trials(
    sm_session: smi.SageMakerSession,
) -> None:
    plain = tuning(sm_session).dry_run(CHANNELS, name="dogs-plain")
    definition = plain["TrainingJobDefinition"]
    assert definition["Environment"] == {REPORT_BEST_ENV: "1"}
    names = [d["Name"] for d in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "best:valid:accuracy" in names and "valid:accuracy" in names
    for options in ({"early_stopping": "auto"}, {"strategy": "hyperband", "min_epochs": 2}):
        # Early stopping judges each report: one more would be read as another epoch.
        request = tuning(sm_session, **options).dry_run(CHANNELS, name="dogs-early")
        assert REPORT_BEST_ENV not in request["TrainingJobDefinition"].get("Environment", {})


def test_the_job_prints_the_report_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sm_imgclf.runtime.job.main import _print_best

    metrics = {
        "history": [
            {"epoch": 1, "valid:accuracy": 0.9},
            {"epoch": 2, "valid:accuracy": 0.7},
        ],
        "best_epoch": 1,
    }
    _print_best(metrics)
    assert "reported again" not in capsys.readouterr().out
    monkeypatch.setenv(REPORT_BEST_ENV, "1")
    _print_best(metrics)
    lines = capsys.readouterr().out.splitlines()
    accuracy = next(d for d in METRIC_DEFINITIONS if d["Name"] == "valid:accuracy")
    assert last_value(["epoch=2 valid:accuracy=0.7000", *lines], accuracy) == 0.9


def final(job: str, last: float, best: float) -> dict:
    answer = training_job(job, "Completed", 9)
    answer["FinalMetricDataList"] = [
        {"MetricName": "valid:accuracy", "Value": last, "Timestamp": 0},
        {"MetricName": "best:valid:accuracy", "Value": best, "Timestamp": 0},
        {"MetricName": "epoch", "Value": 9.0, "Timestamp": 0},
    ]
    return answer


def test_trials_are_ranked_by_their_best_epoch(sm_session: smi.SageMakerSession) -> None:
    name = "dogs-rank"
    answer = describe(name, "Completed")
    answer["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] = "Auto"
    # SageMaker's pick, by the last epoch: 001 (0.80) over 002 (0.78).
    answer["BestTrainingJob"]["TrainingJobName"] = f"{name}-001"
    trials = [
        summary(f"{name}-001", "Completed", {"lr": "0.01"}, 0.80),
        summary(f"{name}-002", "Completed", {"lr": "0.003"}, 0.78),
    ]
    with Stubber(sm_session.backend.aws.sagemaker_client) as stub:
        stub_run(stub, name, answer, trials)
        for job, last, best in ((f"{name}-001", 0.80, 0.85), (f"{name}-002", 0.78, 0.95)):
            stub.add_response(
                "describe_training_job", final(job, last, best), {"TrainingJobName": job}
            )
        result = smi.TuningResult.attach(name, sm_session)
        stub.assert_no_pending_responses()
    assert [t.objective for t in result.trials] == [0.85, 0.95]
    assert result.best.job_name == f"{name}-002"
    assert "best epoch" in (result.ranked_by or "") and "last epoch" in (result.ranked_by or "")
    assert "ranked by each trial's best epoch" in str(result)


def test_ended_trials_leave_no_checkpoints_for_the_next(
    sm_session: smi.SageMakerSession, bucket: str
) -> None:
    name = "dogs-spot"
    shared = f"tuning/{name}/checkpoints"
    store = sm_session.store
    for trial in ("001", "002", "003"):
        store.put_bytes(f"{shared}/{name}-{trial}/checkpoint.pth", b"weights" * 100)
    store.put_bytes(f"tuning/{name}-old/checkpoints/x/checkpoint.pth", b"another run")
    answer = describe(name, "InProgress")
    answer["TrainingJobDefinition"] = {
        "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/jobs"},
        "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "CheckpointConfig": {"S3Uri": f"s3://{bucket}/{shared}", "LocalPath": "/opt/ml/c"},
    }
    trials = [
        summary(f"{name}-001", "Completed", {"lr": "0.01"}, 0.8),
        summary(f"{name}-002", "Stopped", {"lr": "0.02"}, 0.5),
        summary(f"{name}-003", "InProgress", {"lr": "0.03"}, None),
    ]
    with Stubber(sm_session.backend.aws.sagemaker_client) as stub:
        stub_run(stub, name, answer, trials)
        for job, status in ((f"{name}-001", "Completed"), (f"{name}-002", "Stopped")):
            stub.add_response(
                "describe_training_job", training_job(job, status, 3), {"TrainingJobName": job}
            )
        smi.TuningResult.attach(name, sm_session)
        stub.assert_no_pending_responses()
    # The running trial keeps its checkpoints (a spot interruption resumes from them).
    assert sorted(store.list_objects(f"{shared}/")) == [f"{shared}/{name}-003/checkpoint.pth"]
    assert store.list_objects(f"tuning/{name}-old/")  # another run's prefix is not touched


def parent_answer(name: str, request: dict, drop: str | None = None) -> dict:
    """A parent tuning job described as SageMaker would, run with ``request``'s definition."""
    answer = describe(name, "Completed")
    definition = dict(request["TrainingJobDefinition"])
    static = dict(definition["StaticHyperParameters"])
    static.pop(drop or "", None)
    answer["TrainingJobDefinition"] = {**definition, "StaticHyperParameters": static}
    answer["HyperParameterTuningJobConfig"]["ParameterRanges"] = request[
        "HyperParameterTuningJobConfig"
    ]["ParameterRanges"]
    return answer


def test_a_warm_start_needs_its_parents_hyperparameter_count(
    sm_session: smi.SageMakerSession,
) -> None:
    run = tuning(sm_session, warm_start=["dogs-old"])
    request = run.dry_run(CHANNELS, name="dogs-warm")
    # A parent run before this flag was sent on every processor (a CPU run, say).
    parent = parent_answer("dogs-old", request, drop="sagemaker_torch_distributed_enabled")
    with Stubber(sm_session.backend.aws.sagemaker_client) as stub:
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            parent,
            {"HyperParameterTuningJobName": "dogs-old"},
        )
        with pytest.raises(smi.ConfigurationError, match="parent 'dogs-old' has") as refused:
            run.run(CHANNELS, name="dogs-warm", wait=False)
        stub.assert_no_pending_responses()  # refused before CreateHyperParameterTuningJob
    assert "only here: ['sagemaker_torch_distributed_enabled']" in str(refused.value)
    same = parent_answer("dogs-old", request)
    from sm_imgclf.backends.sagemaker.tuning import warm_start_problems

    assert warm_start_problems(request, {"dogs-old": same}) == []
