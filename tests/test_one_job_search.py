"""A head-only search inside one training job: simulated locally, and as SageMaker requests."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

import sm_imgclf as smi
from sm_imgclf._archive import safe_extract
from sm_imgclf.backends.one_job import search_of
from sm_imgclf.contracts.search import TRIAL_DEFINITION, trials_from_log

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
HEAD = {"image_size": 32, "epochs": 4, "batch_size": 32, "augmentation": "none", "record_every": 5}
SPACE = {"lr": smi.Continuous(1e-3, 1e-1, scale="log"), "head_dropout": smi.Continuous(0, 0.5)}
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}


def head_estimator(session: smi.Session, **hp: object) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "efficientnet_lite0",
        session=session,
        hyperparameters={**HEAD, **hp},
        compute=smi.Compute(image_uri=IMAGE),
    )


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    return smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)


@pytest.mark.slow
def test_one_job_runs_the_whole_search_locally(tmp_path: Path) -> None:
    smi.digits_to_folder(tmp_path / "images", limit_per_class=20)
    session = smi.LocalSession(tmp_path / "session", feature_store=False)
    data = smi.ImageFolderDataset(tmp_path / "images").split(valid=0.25, test=0.2, seed=0)
    channels = data.upload(session, "digits")
    run = smi.TuningRun(
        head_estimator(session),
        SPACE,
        strategy="hyperband",
        max_jobs=5,
        max_parallel_jobs=1,
        seed=0,
        in_one_job=True,
    )
    result = run.run(channels, name="heads", logs=False)
    assert [p.name for p in (tmp_path / "session" / "jobs").iterdir()] == ["heads"]
    log = "\n".join(smi.TrainingJob("heads", session).logs())
    assert log.count("features: backbone run once") == 1
    assert len(result.trials) == 5 and {t.status for t in result.trials} <= {"completed", "pruned"}
    best = result.best
    assert best.job_name.startswith("heads/trial-") and best.job.name == "heads"
    assert best.objective == max(t.objective for t in result.trials if t.status == "completed")
    package = safe_extract(best.job.model_uri.removeprefix("file://"), tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["hyperparameters"]["lr"] == best.hyperparameters["lr"]
    assert manifest["head"]["dropout"] == best.hyperparameters["head_dropout"]
    assert manifest["metrics"]["valid:accuracy"] == pytest.approx(best.objective, abs=1e-4)
    other = next(t for t in result.trials if t.job_name != best.job_name)
    with pytest.raises(smi.BackendError, match="packages only the best trial's model"):
        other.job  # noqa: B018
    with smi.DebugProfileAnalyzer.from_job(best.job) as analyzer:
        assert analyzer.rules()  # the best trial's checks records became the job's
    again = smi.TuningResult.attach("heads", session)
    assert [t.job_name for t in again.trials] == [t.job_name for t in result.trials]


def test_plan_chooses_one_job_on_sagemaker_when_it_applies(
    sm_session: smi.SageMakerSession, local_session: smi.LocalSession
) -> None:
    def planned(session: smi.Session, space: dict = SPACE, **hp: object) -> bool:
        return (
            smi.TuningRun(head_estimator(session, **hp), space, max_jobs=4)
            .plan(CHANNELS)
            .in_one_job
        )

    assert planned(sm_session) is True
    assert planned(local_session) is False  # local trials share features anyway
    assert planned(sm_session, augmentation="light") is False
    assert planned(sm_session, {"image_size": smi.Categorical([32, 64])}) is False
    run = smi.TuningRun(
        head_estimator(sm_session, augmentation="light"), SPACE, max_jobs=4, in_one_job=True
    )
    with pytest.raises(smi.ConfigurationError, match="augmentation=light changes the features"):
        run.plan(CHANNELS)
    assert (
        smi.TuningRun(head_estimator(sm_session), SPACE, max_jobs=4, in_one_job=False)
        .plan(CHANNELS)
        .in_one_job
        is False
    )


def test_one_job_request_is_a_validated_training_job(sm_session: smi.SageMakerSession) -> None:
    run = smi.TuningRun(head_estimator(sm_session), SPACE, strategy="hyperband", max_jobs=20)
    request = run.dry_run(CHANNELS, name="dog-heads")
    assert (
        request["TrainingJobName"] == "dog-heads" and "HyperParameterTuningJobName" not in request
    )
    argument = request["HyperParameters"]["search"]
    # AWS's training toolkit JSON-decodes every hyperparameter: a quoted string stays text.
    decoded = json.loads(argument)
    assert isinstance(decoded, str)
    for form in (argument, decoded):
        search = search_of(form)
        assert search.max_jobs == 20 and sorted(search.space_map) == ["head_dropout", "lr"]
        assert str(search.strategy) == "hyperband"
    assert TRIAL_DEFINITION in request["AlgorithmSpecification"]["MetricDefinitions"]


def test_one_job_ships_optuna_and_is_read_back_as_a_tuning_run(  # type: ignore[no-untyped-def]
    sm_session: smi.SageMakerSession, bucket: str, boto_session, moto_url: str
) -> None:
    run = smi.TuningRun(head_estimator(sm_session), SPACE, max_jobs=6)
    result = run.run(CHANNELS, name="dog-heads-2", wait=False)
    request = run.dry_run(CHANNELS, name="dog-heads-2")
    key = request["HyperParameters"]["sagemaker_submit_directory"].split("/", 3)[3]
    with tarfile.open(fileobj=io.BytesIO(sm_session.store.get_bytes(key))) as tar:
        requirements = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    assert "optuna==" in requirements and "efficientnet-lite-pytorch" in requirements
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    fresh = smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)
    again = smi.TuningResult.attach("dog-heads-2", fresh)  # no tuning job of that name
    assert again.status == result.status and again.objective == "valid:accuracy"
    assert again.trials == []  # nothing logged yet


def test_trial_lines_read_back() -> None:
    lines = [
        'trial {"ended": 2.0, "epochs": 3, "failure_reason": null, "hyperparameters": '
        '{"lr": "0.01"}, "note": null, "number": 4, "objective": 0.91, "started": 1.0, '
        '"status": "completed"} trial_objective=0.91',
        "trial {cut short",
        "epoch=1 valid:accuracy=0.5",
    ]
    (record,) = trials_from_log(lines, "job")
    assert record.job_name == "job/trial-004" and record.objective == 0.91
    assert record.hyperparameters == {"lr": "0.01"} and record.epochs == 3


def per_trial(session: smi.Session, space: dict = SPACE, **options: object) -> smi.TuningRun:
    return smi.TuningRun(head_estimator(session), space, max_jobs=6, in_one_job=False, **options)  # type: ignore[arg-type]


def test_plan_shares_features_across_trial_jobs_on_sagemaker(
    sm_session: smi.SageMakerSession, local_session: smi.LocalSession
) -> None:
    spec = per_trial(sm_session).plan(CHANNELS, name="dog-heads-3")
    assert spec.shared_features and spec.trial_instance_type == "ml.m5.xlarge"
    assert spec.features_training().features_only
    assert spec.features_training().instance_type == "ml.g4dn.xlarge"  # the backbone's GPU
    assert spec.trial_training().instance_type == "ml.m5.xlarge"
    assert (
        per_trial(sm_session, trial_instance_type="ml.c5.2xlarge")
        .plan(CHANNELS)
        .trial_instance_type
        == "ml.c5.2xlarge"
    )
    assert not per_trial(sm_session, share_features=False).plan(CHANNELS).shared_features
    assert not per_trial(local_session).plan(CHANNELS).shared_features  # the store shares
    with pytest.raises(smi.ConfigurationError, match="feature store"):
        per_trial(local_session, share_features=True).plan(CHANNELS)  # no features job locally
    one_job = smi.TuningRun(head_estimator(sm_session), SPACE, max_jobs=6).plan(CHANNELS)
    assert one_job.in_one_job and not one_job.shared_features
    tuned_size = per_trial(sm_session, {"image_size": smi.Categorical([32, 64])}).plan(CHANNELS)
    assert not tuned_size.shared_features and tuned_size.trial_instance_type is None


def test_sharing_features_where_it_cannot_apply_says_why(sm_session: smi.SageMakerSession) -> None:
    run = per_trial(sm_session, {"image_size": smi.Categorical([32, 64])}, share_features=True)
    with pytest.raises(smi.ConfigurationError, match="image_size change the backbone"):
        run.plan(CHANNELS)
    run = per_trial(
        sm_session, {"image_size": smi.Categorical([32, 64])}, trial_instance_type="ml.m5.large"
    )
    with pytest.raises(smi.ConfigurationError, match="trial_instance_type"):
        run.plan(CHANNELS)
    with pytest.raises(smi.ConfigurationError, match="trial_instance_type"):
        per_trial(sm_session, trial_instance_type="m5.large")


def test_trials_read_the_features_job_output_as_a_channel(  # type: ignore[no-untyped-def]
    sm_session: smi.SageMakerSession,
    bucket: str,
    boto_session,
    moto_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = per_trial(sm_session)
    result = run.run(CHANNELS, name="dog-heads-4", wait=False)
    out = capsys.readouterr().out
    assert "features: job dog-heads-4-features runs the backbone once on ml.g4dn.xlarge" in out
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    features = client.describe_training_job(TrainingJobName="dog-heads-4-features")
    assert features["HyperParameters"]["features_only"] == "true"
    assert features["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    stored = features["CheckpointConfig"]["S3Uri"]
    tuning = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=result.name)
    definition = tuning["TrainingJobDefinition"]
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in definition["InputDataConfig"]
    }
    assert channels["features"] == f"{stored}/features/"
    assert channels["train"] == "s3://b/data/train/"
    assert definition["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert "features_only" not in definition["StaticHyperParameters"]
    # The dry run is the same, validated request (a CPU image for the CPU trials).
    request = run.dry_run(CHANNELS, name="dog-heads-4")
    trial_image = request["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"]
    assert trial_image == IMAGE  # the estimator named its image; it is kept
    looked_up = smi.TuningRun(
        smi.TransferLearningEstimator(
            "efficientnet_lite0", session=sm_session, hyperparameters=HEAD
        ),
        SPACE,
        max_jobs=6,
        in_one_job=False,
    ).dry_run(CHANNELS, name="dog-heads-4")
    assert "-cpu-" in looked_up["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"]
    assert "and first the features job, training: 1 x ml.g4dn.xlarge" in str(run.estimate(CHANNELS))


def test_a_failed_features_job_creates_no_tuning_job(  # type: ignore[no-untyped-def]
    sm_session: smi.SageMakerSession, boto_session, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf.contracts.status import JobState, JobStatus

    monkeypatch.setattr(
        sm_session.backend,
        "describe_training",
        lambda name: JobStatus(JobState.FAILED, "CUDA out of memory"),
    )
    with pytest.raises(smi.TrainingJobFailedError, match="CUDA out of memory"):
        per_trial(sm_session).run(CHANNELS, name="dog-heads-5", wait=False, logs=False)
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    names = [
        j["HyperParameterTuningJobName"]
        for j in client.list_hyper_parameter_tuning_jobs(NameContains="dog-heads-5")[
            "HyperParameterTuningJobSummaries"
        ]
    ]
    assert names == []
