"""What tracking adds to the requests a session sends: checked without MLflow or AWS."""

from __future__ import annotations

import io
import tarfile

import pytest

import sm_imgclf as smi

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


def session(moto_url: str, bucket: str, boto_session, uri: str | None) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url}
    return smi.SageMakerSession(
        bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls, tracking_uri=uri
    )


def estimator(on: smi.Session) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "resnet18", session=on, weights=None, hyperparameters={"augmentation": "light"}
    )


def test_a_tracked_job_request_tells_the_job_where_to_log(
    moto_url: str, bucket: str, boto_session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracked = session(moto_url, bucket, boto_session, "https://mlflow.example.com")
    request = estimator(tracked).dry_run(CHANNELS)
    assert request["Environment"] == {
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
        "MLFLOW_EXPERIMENT_NAME": "sm-imgclf",
    }
    untracked = session(moto_url, bucket, boto_session, None)
    assert "Environment" not in estimator(untracked).dry_run(CHANNELS)


def test_the_standard_variable_turns_tracking_on(
    moto_url: str, bucket: str, boto_session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ARN)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "dogs")
    request = estimator(session(moto_url, bucket, boto_session, None)).dry_run(CHANNELS)
    assert request["Environment"]["MLFLOW_TRACKING_URI"] == ARN
    assert request["Environment"]["MLFLOW_EXPERIMENT_NAME"] == "dogs"


def test_a_tuning_request_carries_tracking_to_every_trial(
    moto_url: str, bucket: str, boto_session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracked = session(moto_url, bucket, boto_session, "https://mlflow.example.com")
    spot = smi.TransferLearningEstimator(
        "resnet18",
        session=tracked,
        weights=None,
        hyperparameters={"augmentation": "light"},
        compute=smi.Compute(use_spot=True),
    )
    run = smi.TuningRun(spot, {"lr": smi.Continuous(1e-4, 1e-1, scale="log")}, max_jobs=4)
    definition = run.dry_run(CHANNELS)["TrainingJobDefinition"]
    assert definition["Environment"]["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert definition["Environment"]["SM_IMGCLF_CHECKPOINT_PER_JOB"] == "1"  # both kept


def test_a_sagemaker_job_cannot_log_to_a_store_on_this_machine(
    moto_url: str, bucket: str, boto_session, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    local = session(moto_url, bucket, boto_session, f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(smi.ConfigurationError, match=r"tracking_uri(.|\n)*LocalSession"):
        estimator(local).plan(CHANNELS)


def test_an_empty_tracking_uri_is_refused_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(smi.ConfigurationError, match="tracking_uri"):
        smi.LocalSession(tmp_path, tracking_uri="")


def test_the_source_tarball_asks_for_what_tracking_needs(
    moto_url: str, bucket: str, boto_session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracked = session(moto_url, bucket, boto_session, ARN)
    spec = estimator(tracked).plan(CHANNELS)
    _, uploads = tracked.backend.jobs.artifacts(spec)
    tarball = next(iter(uploads.values()))
    assert isinstance(tarball, bytes)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        requirements = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    assert "mlflow>=3.1,<4" in requirements and "sagemaker-mlflow" in requirements
