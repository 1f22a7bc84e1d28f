"""SageMaker tuning: requests botocore validates, and the service's answers through Stubber."""

from __future__ import annotations

import copy

import pytest
from botocore.stub import Stubber

import sm_imgclf as smi
from helpers.tuning_answers import describe, summary, training_job
from sm_imgclf.backends.sagemaker.training import source_key, source_tarball

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}
AUGMENTED = {"augmentation": "light"}
SPACE = {
    "lr": smi.Continuous(1e-4, 1e-1, scale="log"),
    "momentum": smi.Continuous(0.8, 0.99, scale="reverse_log"),
    "batch_size": smi.Categorical([32, 64]),
    "head_hidden": smi.Integer(0, 512),
}


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    return smi.SageMakerSession(
        bucket,
        role=ROLE,
        boto_session=boto_session,
        endpoint_urls={"s3": moto_url, "sagemaker": moto_url},
    )


def tuning(session: smi.Session, space: dict | None = None, **options: object) -> smi.TuningRun:
    est = smi.TransferLearningEstimator(
        "resnet50",
        session=session,
        # Augmented, so each trial is a training job on the GPU instance (a frozen head
        # without augmentation trains on cached features: see test_one_job_search.py).
        hyperparameters={"lr": 0.01, "batch_size": 64, "epochs": 9, **AUGMENTED},
        compute=smi.Compute(image_uri=IMAGE),
    )
    return smi.TuningRun(est, space or SPACE, max_jobs=20, max_parallel_jobs=2, **options)  # type: ignore[arg-type]


def test_request_reuses_the_training_definition(sm_session: smi.SageMakerSession) -> None:
    run = tuning(sm_session, early_stopping="auto", warm_start=["dogs-old"], seed=7)
    request = run.dry_run(CHANNELS, name="dogs-tune")
    training = run.estimator.dry_run(CHANNELS, name="dogs-tune")
    definition = request["TrainingJobDefinition"]
    for key in (
        "AlgorithmSpecification",
        "RoleArn",
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
    ):
        assert definition[key] == training[key]
    static = definition["StaticHyperParameters"]
    assert static["epochs"] == "9" and static["model"] == "resnet50"
    assert not {"lr", "batch_size", "momentum", "head_hidden"} & set(static)
    assert static["sagemaker_submit_directory"].endswith(source_key(source_tarball()))
    assert "CheckpointConfig" not in definition  # trials would share one prefix
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["RandomSeed"] == 7
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "valid:accuracy",
    }
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "batch_size", "Values": ["32", "64"]}]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "head_hidden", "MinValue": "0", "MaxValue": "512", "ScalingType": "Linear"}
    ]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"},
        {
            "Name": "momentum",
            "MinValue": "0.8",
            "MaxValue": "0.99",
            "ScalingType": "ReverseLogarithmic",
        },
    ]
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "dogs-old"}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    names = [d["Name"] for d in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "valid:accuracy" in names


def test_hyperband_and_spot_requests(sm_session: smi.SageMakerSession, bucket: str) -> None:
    run = tuning(
        sm_session,
        {"lr": smi.Continuous(1e-4, 1e-1, scale="log")},
        strategy="hyperband",
        min_epochs=2,
    )
    run.estimator = run.estimator.__class__(
        "resnet50",
        session=sm_session,
        hyperparameters={"epochs": 9, **AUGMENTED},
        compute=smi.Compute(image_uri=IMAGE, use_spot=True),
    )
    request = run.dry_run(CHANNELS, name="dogs-hb")
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Hyperband"
    assert config["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": 9}
    }
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    definition = request["TrainingJobDefinition"]
    assert definition["CheckpointConfig"]["S3Uri"] == f"s3://{bucket}/tuning/dogs-hb/checkpoints"
    assert definition["Environment"] == {"SM_IMGCLF_CHECKPOINT_PER_JOB": "1"}
    assert definition["EnableManagedSpotTraining"] is True


def test_request_outside_the_service_limits_is_refused(sm_session: smi.SageMakerSession) -> None:
    # Bad names are refused by botocore's own validation before anything is sent.
    run = tuning(sm_session)
    run.estimator = smi.TransferLearningEstimator(
        "resnet50",
        session=sm_session,
        role="arn:aws:iam::123:role/ShortAccount",
        hyperparameters=AUGMENTED,
        compute=smi.Compute(image_uri=IMAGE),
    )
    with pytest.raises(smi.ConfigurationError, match="CreateTrainingJob request is invalid"):
        run.dry_run(CHANNELS, name="dogs-tags")


def test_run_creates_the_job_and_reads_typed_trials(sm_session: smi.SageMakerSession) -> None:
    run = tuning(
        sm_session,
        strategy="hyperband",
        space={
            "lr": smi.Continuous(1e-4, 1e-1, scale="log"),
            "batch_size": smi.Categorical([32, 64]),
        },
    )
    request = run.dry_run(CHANNELS, name="dogs-t")
    backend = sm_session.backend
    name = "dogs-t"
    with Stubber(backend.aws.sagemaker_client) as stub:
        stub.add_response(
            "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, request
        )
        # One description a refresh: list_trials reuses the run's configuration.
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            describe(name, "Completed", "Hyperband"),
            {"HyperParameterTuningJobName": name},
        )
        stub.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {
                "TrainingJobSummaries": [
                    summary(
                        f"{name}-001-aaaa",
                        "Completed",
                        {"lr": '"0.01"', "batch_size": '"32"'},
                        0.71,
                    ),
                    summary(
                        f"{name}-002-bbbb",
                        "Completed",
                        {"lr": '"0.003"', "batch_size": '"64"'},
                        0.84,
                    ),
                ],
                "NextToken": "page-2",
            },
            {
                "HyperParameterTuningJobName": name,
                "MaxResults": 100,
                "SortBy": "CreationTime",
                "SortOrder": "Ascending",
            },
        )
        stub.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {
                "TrainingJobSummaries": [
                    summary(f"{name}-003-cccc", "Stopped", {"lr": "0.09", "batch_size": "64"}, 0.2),
                    summary(
                        f"{name}-004-dddd",
                        "Failed",
                        {"lr": "0.0001", "batch_size": "32"},
                        None,
                        FailureReason="AlgorithmError: CUDA out of memory",
                    ),
                ]
            },
            {
                "HyperParameterTuningJobName": name,
                "MaxResults": 100,
                "SortBy": "CreationTime",
                "SortOrder": "Ascending",
                "NextToken": "page-2",
            },
        )
        for job, status, epochs in (
            (f"{name}-001-aaaa", "Completed", 9),
            (f"{name}-002-bbbb", "Completed", 9),
            (f"{name}-003-cccc", "Stopped", 3),
            (f"{name}-004-dddd", "Failed", 1),
        ):
            stub.add_response(
                "describe_training_job", training_job(job, status, epochs), {"TrainingJobName": job}
            )
        result = run.run(CHANNELS, name=name, wait=False)
        trials = result.trials
        stub.assert_no_pending_responses()
    assert [t.status for t in trials] == ["completed", "completed", "pruned", "failed"]
    assert [t.epochs for t in trials] == [9, 9, 3, 1]
    assert trials[2].objective == 0.2  # the early-stopped trial keeps its last objective
    assert result.best.hyperparameters == {"lr": 0.003, "batch_size": 64}
    assert result.best.job_name == "dogs-t-002-bbbb" and result.best.objective == 0.84
    assert trials[0].duration == 720.0 and "CUDA" in (trials[3].failure_reason or "")
    assert sm_session.store.get_bytes(source_key(source_tarball())) == source_tarball()


def test_stop_and_failure(sm_session: smi.SageMakerSession) -> None:
    backend = sm_session.backend
    with Stubber(backend.aws.sagemaker_client) as stub:
        stub.add_response(
            "stop_hyper_parameter_tuning_job", {}, {"HyperParameterTuningJobName": "dogs-f"}
        )
        failed = describe("dogs-f", "Failed")
        failed["FailureReason"] = "All training jobs failed"
        del failed["BestTrainingJob"]
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            failed,  # once a refresh
            {"HyperParameterTuningJobName": "dogs-f"},
        )
        stub.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {"TrainingJobSummaries": []},
            {
                "HyperParameterTuningJobName": "dogs-f",
                "MaxResults": 100,
                "SortBy": "CreationTime",
                "SortOrder": "Ascending",
            },
        )
        result = smi.TuningResult("dogs-f", sm_session)
        result.stop()
        with pytest.raises(smi.TuningFailedError, match="All training jobs failed"):
            result.wait(logs=False)
        stub.add_client_error(
            "describe_hyper_parameter_tuning_job",
            "ResourceNotFound",
            "Amazon SageMaker can't find a tuning job",
            expected_params={"HyperParameterTuningJobName": "nope"},
        )
        with pytest.raises(smi.BackendError, match="DescribeHyperParameterTuningJob"):
            smi.TuningResult.attach("nope", sm_session)


def test_a_run_that_used_its_wall_time_says_it_stopped_for_it(
    sm_session: smi.SageMakerSession,
) -> None:
    backend = sm_session.backend
    ended = describe("dogs-b", "Completed")
    ended["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxRuntimeInSeconds"] = 3600
    ended["ConsumedResources"] = {"RuntimeInSeconds": 3600}
    ended["TrainingJobStatusCounters"] = {
        "Completed": 1,
        "Stopped": 1,
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": 0,
    }
    finished = describe("dogs-c", "Completed")  # every trial started before the limit
    finished["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxRuntimeInSeconds"] = 3600
    finished["ConsumedResources"] = {"RuntimeInSeconds": 1800}
    with Stubber(backend.aws.sagemaker_client) as stub:
        for name, answer in (("dogs-b", ended), ("dogs-c", finished)):
            stub.add_response(
                "describe_hyper_parameter_tuning_job", answer, {"HyperParameterTuningJobName": name}
            )
        budget = backend.describe_tuning("dogs-b")
        plain = backend.describe_tuning("dogs-c")
    assert budget.stop_reason == (
        "stopped at the run's wall-time limit: 3,600 s of 3,600 s "
        "(MaxRuntimeInSeconds, which max_cost sets); 2 of 3 trials "
        "started"
    )
    assert plain.stop_reason is None


def test_a_hyperband_trial_that_trained_every_epoch_is_not_pruned() -> None:
    from sm_imgclf.backends.sagemaker.tuning import settled, trial_record

    stopped = trial_record(summary("hb-001", "Stopped", {"lr": "0.01"}, 0.9), True)
    assert stopped.status == "pruned"  # all the status says under Hyperband
    # Stopped on reaching MaxResource: it trained them all.
    full = settled(stopped, {"epoch": 9.0}, "valid:accuracy", 9)
    assert full.status == "completed" and full.epochs == 9 and "all 9 epochs" in (full.note or "")
    assert settled(stopped, {"epoch": 3.0}, "valid:accuracy", 9).status == "pruned"  # a rung
    assert settled(stopped, {"epoch": 9.0}, "valid:accuracy", None).status == "pruned"


def test_trials_read_a_sharded_training_split_with_fast_file(
    sm_session: smi.SageMakerSession, bucket: str
) -> None:
    from helpers.images import manifest_text

    sm_session.store.put_bytes("sh/train/manifest.json", manifest_text(1000, shards=4).encode())
    channels = {"train": f"s3://{bucket}/sh/train", "valid": f"s3://{bucket}/sh/valid"}
    run = tuning(sm_session)
    request = run.dry_run(channels, name="sharded-t")  # plans read nothing: File throughout
    modes = [c["InputMode"] for c in request["TrainingJobDefinition"]["InputDataConfig"]]
    assert modes == ["File", "File"]
    expected = copy.deepcopy(request)
    expected["TrainingJobDefinition"]["InputDataConfig"][0]["InputMode"] = "FastFile"
    with Stubber(sm_session.backend.aws.sagemaker_client) as stub:
        stub.add_response(
            "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, expected
        )
        run.run(channels, name="sharded-t", wait=False)
        stub.assert_no_pending_responses()
