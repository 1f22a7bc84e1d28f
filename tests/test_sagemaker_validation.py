"""Requests checked against the whole service model: what botocore lets through, refused here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import sm_imgclf as smi
from sm_imgclf.backends.sagemaker.training import validate_request
from sm_imgclf.contracts.deploy import DeploySpec

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}


@pytest.fixture(scope="module")
def session() -> smi.SageMakerSession:
    # Nothing listens on port 9: a request that got as far as the network would fail loudly.
    urls = {name: "http://127.0.0.1:9" for name in ("s3", "sagemaker", "sagemaker-runtime")}
    return smi.SageMakerSession(
        "my-bucket",
        role=ROLE,
        region="us-east-1",
        endpoint_urls=urls,
        boto_session=boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing"),
    )


@pytest.fixture(scope="module")
def built(session: smi.SageMakerSession) -> dict[str, dict[str, Any]]:
    est = smi.TransferLearningEstimator(
        "resnet50",
        session=session,
        hyperparameters={"augmentation": "light"},  # trials as training jobs
        compute=smi.Compute(image_uri=IMAGE),
    )
    run = smi.TuningRun(
        est,
        {"lr": smi.Continuous(1e-4, 1e-1, scale="log"), "batch_size": smi.Categorical([32, 64])},
        strategy="hyperband",
    )
    deploy = session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", "s3://b/m.tar.gz", role=ROLE, serverless_memory_mb=2048)
    )
    return {
        "CreateTrainingJob": est.dry_run(CHANNELS, name="dogs-1"),
        "CreateHyperParameterTuningJob": run.dry_run(CHANNELS, name="dogs-tune"),
        **deploy,
    }


def change(request: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(request)
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return changed


CASES: list[tuple[str, str, Any, str]] = [
    (
        "CreateHyperParameterTuningJob",
        "HyperParameterTuningJobName",
        "t" * 33,
        "HyperParameterTuningJobName must be at most 32 long; got 33",
    ),
    (
        "CreateEndpointConfig",
        "ProductionVariants.0.ServerlessConfig.MaxConcurrency",
        201,
        "ServerlessConfig.MaxConcurrency must be at most 200; got 201",
    ),
    ("CreateEndpoint", "EndpointName", "dogs_endpoint", "EndpointName must match"),
    ("CreateModel", "ModelName", "-dogs", "ModelName must match"),
    ("CreateTrainingJob", "TrainingJobName", "x" * 64, "at most 63 long"),
    (
        "CreateTrainingJob",
        "AlgorithmSpecification.TrainingInputMode",
        "Stream",
        "TrainingInputMode must be one of ['FastFile', 'File', 'Pipe']",
    ),
    (
        "CreateTrainingJob",
        "HyperParameters.lr",
        "1" * 2501,
        "HyperParameters['lr'] must be at most 2500 long",
    ),
    (
        "CreateEndpointConfig",
        "ProductionVariants.0.ServerlessConfig.MemorySizeInMB",
        1536,
        "MemorySizeInMB must be a multiple of 1024",
    ),
    (
        "CreateHyperParameterTuningJob",
        "HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType",
        "Auto",
        "must be 'Off' with the Hyperband strategy",
    ),
    (
        "CreateHyperParameterTuningJob",
        "HyperParameterTuningJobConfig.Strategy",
        "Grid",
        "only CategoricalParameterRanges with the Grid strategy",
    ),
    (
        "CreateTrainingJob",
        "StoppingCondition.MaxRuntimeInSeconds",
        28 * 24 * 3600 + 1,
        "must be at most 2419200 (28 days)",
    ),
]


@pytest.mark.parametrize(
    ("operation", "path", "value", "message"),
    CASES,
    ids=[f"{c[0]}:{c[1].rsplit('.', 1)[-1]}" for c in CASES],
)
def test_what_the_service_would_refuse_is_named_before_any_call(
    session: smi.SageMakerSession,
    built: dict[str, dict[str, Any]],
    operation: str,
    path: str,
    value: Any,
    message: str,
) -> None:
    client = session.backend.aws.sagemaker_client  # type: ignore[attr-defined]
    validate_request(client, operation, built[operation])  # as built, it is valid
    with Stubber(client), pytest.raises(smi.ConfigurationError) as caught:  # no call may go out
        validate_request(client, operation, change(built[operation], path, value))
    assert message in str(caught.value) and "SageMaker would refuse" in str(caught.value)


def test_spot_needs_a_wait_at_least_the_run(session: smi.SageMakerSession) -> None:
    est = smi.TransferLearningEstimator(
        "resnet50",
        session=session,
        compute=smi.Compute(image_uri=IMAGE, use_spot=True, max_run=3600),
    )
    request = est.dry_run(CHANNELS, name="dogs-2")
    client = session.backend.aws.sagemaker_client  # type: ignore[attr-defined]
    short = change(request, "StoppingCondition.MaxWaitTimeInSeconds", 600)
    with pytest.raises(smi.ConfigurationError, match="at least MaxRuntimeInSeconds"):
        validate_request(client, "CreateTrainingJob", short)
    on_demand = change(request, "EnableManagedSpotTraining", False)
    with pytest.raises(smi.ConfigurationError, match="allowed only with EnableManaged"):
        validate_request(client, "CreateTrainingJob", on_demand)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda s: smi.TransferLearningEstimator("resnet50", session=s).plan(
                CHANNELS, name="dogs_1"
            ),
            "name must be 1-63 letters, digits and hyphens",
        ),
        (
            lambda s: smi.TuningRun(
                smi.TransferLearningEstimator("resnet50", session=s),
                {"lr": smi.Continuous(1e-4, 1e-1)},
            ).plan(CHANNELS, name="dogs-tune-" + "x" * 23),
            "name must be at most 32 characters",
        ),
        (lambda s: DeploySpec("dogs.v2", "s3://b/m.tar.gz"), "name must be"),
    ],
)
def test_user_names_are_checked_when_the_plan_is_built(
    session: smi.SageMakerSession, build: Callable[[smi.Session], object], message: str
) -> None:
    with pytest.raises(smi.ConfigurationError, match=message):
        build(session)


def test_a_grid_runs_every_combination(session: smi.SageMakerSession) -> None:
    est = smi.TransferLearningEstimator(
        "resnet50", session=session, compute=smi.Compute(image_uri=IMAGE)
    )
    grid = {"batch_size": smi.Categorical([32, 64]), "lr": smi.Categorical([0.01, 0.1, 0.3])}
    run = smi.TuningRun(est, grid, strategy="grid", max_jobs=50, in_one_job=False)
    request = run.dry_run(CHANNELS, name="grid-1")
    assert (
        request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6
    )
    client = session.backend.aws.sagemaker_client  # type: ignore[attr-defined]
    fewer = change(
        request, "HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs", 4
    )
    with Stubber(client), pytest.raises(smi.ConfigurationError, match="grid's 6 combinations"):
        validate_request(client, "CreateHyperParameterTuningJob", fewer)


def test_a_run_limit_past_28_days_is_refused_when_it_is_set() -> None:
    with pytest.raises(smi.ConfigurationError, match=r"max_run must be in \[1, 2419200\]"):
        smi.Compute(max_run=29 * 24 * 3600)
